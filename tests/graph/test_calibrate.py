"""CalibrationData and collect_ranges: one DataError per bad input, ranges equal to NumPy's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.errors import DataError
from quanta.graph import CalibrationData, collect_ranges, quantize_static
from quanta.quant import MovingAverageMinMaxObserver

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def affine_model(batch: int | str = "N") -> onnx.ModelProto:
    """t = x * 2; y = t + 1, with x float32 (batch, 4)."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["t"], name="mul"),
            helper.make_node("Add", ["t", "one"], ["y"], name="add"),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        [
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def samples(n: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 3.0, (n, 4)).astype(np.float32)


# --- CalibrationData errors -------------------------------------------------------------------


def test_zero_samples() -> None:
    with pytest.raises(DataError, match="0 samples"):
        CalibrationData({"x": np.zeros((0, 4), np.float32)})


def test_no_arrays() -> None:
    with pytest.raises(DataError, match="no arrays"):
        CalibrationData({})


def test_arrays_disagree_on_sample_count() -> None:
    with pytest.raises(DataError, match="different sample counts"):
        CalibrationData({"a": np.zeros((3, 4)), "b": np.zeros((2, 4))})


@pytest.mark.parametrize("limit", [0, -1])
def test_samples_limit_below_one(limit: int) -> None:
    with pytest.raises(DataError, match="--samples must be >= 1"):
        CalibrationData({"x": samples()}, samples=limit)


def test_samples_limit_caps_the_count() -> None:
    assert CalibrationData({"x": samples(30)}, samples=3).count == 3
    assert CalibrationData({"x": samples(30)}, samples=100).count == 30


def test_missing_input_name() -> None:
    data = CalibrationData({"image": samples()})
    with pytest.raises(DataError, match=r"missing \['x'\]"):
        data.check_inputs(affine_model())


def test_extra_input_name() -> None:
    data = CalibrationData({"x": samples(), "mask": samples()})
    with pytest.raises(DataError, match=r"unexpected \['mask'\]"):
        data.check_inputs(affine_model())


@pytest.mark.parametrize("shape", [(30, 5), (30, 4, 1), (30,)])
def test_wrong_shape(shape: tuple[int, ...]) -> None:
    data = CalibrationData({"x": np.zeros(shape, np.float32)})
    with pytest.raises(DataError, match=r"expects \(N, 4\)"):
        data.check_inputs(affine_model())


def test_wrong_shape_is_caught_by_the_pass(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    data = CalibrationData({"image": make_images(4, hw=28)})  # the model takes 8x8
    with pytest.raises(DataError, match="'image' expects"):
        quantize_static(make_convnet(), data)


# --- collect_ranges ---------------------------------------------------------------------------


def test_ranges_equal_numpy_min_max_of_each_tensor() -> None:
    x = samples(30)
    t = x * np.float32(2.0)  # computed independently, in float32 as ONNX Runtime does
    y = t + np.float32(1.0)
    calls: list[tuple[int, int]] = []
    data = CalibrationData({"x": x}, batch_size=7)  # 5 batches, the last one of 2
    observers = collect_ranges(
        affine_model(), ["x", "t", "y"], data, on_batch=lambda i, n: calls.append((i, n))
    )
    for name, value in {"x": x, "t": t, "y": y}.items():
        lo, hi = observers[name].range()
        assert (float(lo), float(hi)) == (float(value.min()), float(value.max())), name
    assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert observers["y"].batches == 5


def test_samples_limit_hides_later_samples() -> None:
    x = samples(10)
    x[5] = 1000.0  # beyond the limit: must not widen the range
    observers = collect_ranges(affine_model(), ["y"], CalibrationData({"x": x}, samples=5))
    _, hi = observers["y"].range()
    assert float(hi) == float((x[:5] * np.float32(2.0) + np.float32(1.0)).max())


def test_fixed_batch_dimension_feeds_one_sample_at_a_time() -> None:
    x = samples(6)
    calls: list[tuple[int, int]] = []
    data = CalibrationData({"x": x})  # batch_size=100 is ignored: the model takes 1 at a time
    observers = collect_ranges(
        affine_model(batch=1), ["y"], data, on_batch=lambda i, n: calls.append((i, n))
    )
    assert calls[-1] == (6, 6)
    lo, hi = observers["y"].range()
    assert (float(lo), float(hi)) == (float((2 * x + 1).min()), float((2 * x + 1).max()))


def test_float64_samples_are_fed_as_float32() -> None:
    x = samples(8).astype(np.float64)
    lo, hi = collect_ranges(affine_model(), ["x"], CalibrationData({"x": x}))["x"].range()
    assert (float(lo), float(hi)) == (x.min(), x.max())


def test_custom_observer() -> None:
    x = samples(20)
    observers = collect_ranges(
        affine_model(), ["x"], CalibrationData({"x": x}, batch_size=10),
        make_observer=lambda: MovingAverageMinMaxObserver(decay=0.5),
    )  # fmt: skip
    _, hi = observers["x"].range()
    # EMA over two batches: 0.5 * max(batch 0) + 0.5 * max(batch 1).
    np.testing.assert_allclose(float(hi), 0.5 * x[:10].max() + 0.5 * x[10:].max(), rtol=1e-6)


def test_model_that_cannot_run_raises_data_error() -> None:
    data = CalibrationData({"x": np.zeros((4, 4), np.float16)})  # the model takes float32
    with pytest.raises(DataError, match="could not run on calibration batch 0"):
        collect_ranges(affine_model(), ["y"], data)
