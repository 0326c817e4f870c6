"""Calibration statistics computed inside ONNX Runtime against NumPy on hand-built arrays."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from quanta.graph.calibrate import CalibrationData, collect_statistics
from quanta.quant import HistogramObserver, MeanObserver, MinMaxObserver, Observer
from quanta.runtime.statistics import StatisticsSession


def _relu_net() -> onnx.ModelProto:
    """x (N, 3, 4, 5) -> Relu -> r -> Mul(-2) -> y: r has exact zeros, y is <= 0."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Mul", ["r", "k"], ["y"]),
        ],
        "relu_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [-2.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _batch(seed: int, n: int = 2, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 3, 4, 5)) * scale).astype(np.float32)


def test_summaries_equal_numpy() -> None:
    x = _batch(0)
    x[0, 0, 0, :3] = 0.0  # exact zeros in x as well as the Relu's
    session = StatisticsSession(_relu_net(), ["x", "r", "y"], {"r": 1}, samples=True, sample_cap=7)
    result = session.run({"x": x})
    assert result is not None
    summaries, sums = result
    r, y = np.maximum(x, 0), np.maximum(x, 0) * -2
    for name, value in {"x": x, "r": r, "y": y}.items():
        s = summaries[name]
        assert (s.minimum, s.maximum, s.size) == (value.min(), value.max(), value.size)
        step = -(-value.size // 7)  # 120 values, cap 7: every 18th
        assert s.sample is not None
        np.testing.assert_array_equal(s.sample, value.ravel()[::step])
    np.testing.assert_allclose(sums["r"].sums, r.sum(axis=(0, 2, 3), dtype=np.float64), rtol=1e-6)
    assert sums["r"].count == 2 * 4 * 5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_inf_anywhere_is_reported(bad: float) -> None:
    x = _batch(1)
    x[1, 2, 3, 4] = bad  # the last value: ONNX Runtime's ReduceMin/Max may skip a NaN there
    session = StatisticsSession(_relu_net(), ["x", "y"], {}, samples=False)
    assert session.run({"x": x}) is None
    assert session.run({"x": _batch(1)}) is not None


class _WholeHistogram(HistogramObserver):
    """The same observer fed whole tensors (the path before in-graph statistics)."""

    from_summary: ClassVar[bool] = False


class _WholeMinMax(MinMaxObserver):
    from_summary: ClassVar[bool] = False


def _collect(
    make: Callable[[], Observer], batches: list[np.ndarray], means: dict[str, int] | None = None
) -> tuple[dict[str, Any], dict[str, MeanObserver]]:
    data = CalibrationData({"x": np.concatenate(batches)}, batch_size=len(batches[0]))
    return collect_statistics(_relu_net(), ["x", "r", "y"], data, channel_means=means,
                              make_observer=make)  # fmt: skip


def _no_whole_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a clean batch was read whole, not summarized in the graph")

    monkeypatch.setattr("quanta.graph.calibrate.session_with_outputs", refuse)


def test_histograms_equal_numpys_while_the_range_widens(monkeypatch: pytest.MonkeyPatch) -> None:
    # each batch wider than the last: the grid grows (re-binning whole bins) twice
    batches = [_batch(2, scale=0.5), _batch(3, scale=2.0), _batch(4, scale=8.0)]
    batches[1][0, 1, :2, :2] = 0.0
    with monkeypatch.context() as m:
        _no_whole_tensors(m)
        in_graph, _ = _collect(partial(HistogramObserver, bins=64), batches)
    whole, _ = _collect(partial(_WholeHistogram, bins=64), batches)
    for name in ["x", "r", "y"]:
        a, b = in_graph[name], whole[name]
        assert a.counts is not None and b.counts is not None
        np.testing.assert_array_equal(a.counts, b.counts)
        assert (a.hist_min, a.bin_width, a.zeros, a.batches) == (
            b.hist_min,
            b.bin_width,
            b.zeros,
            b.batches,
        )
        assert a.range() == b.range()
    # and the oracle: every value of r, on the final grid, by NumPy alone
    r = np.maximum(np.concatenate(batches), 0).astype(np.float64).ravel()
    obs = in_graph["r"]
    bins = np.minimum(np.floor((r - obs.hist_min) / obs.bin_width).astype(int), 63)
    np.testing.assert_array_equal(obs.counts, np.bincount(bins, minlength=64))
    assert obs.zeros == np.count_nonzero(r == 0)


def test_minmax_and_means_equal_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [_batch(5), _batch(6, scale=3.0)]
    _no_whole_tensors(monkeypatch)
    ranges, means = _collect(MinMaxObserver, batches, {"r": 1, "x": 1})
    x = np.concatenate(batches)
    r = np.maximum(x, 0)
    assert ranges["x"].range() == (x.min(), x.max())
    assert ranges["r"].range() == (0.0, r.max())
    np.testing.assert_allclose(means["r"].mean(), r.mean(axis=(0, 2, 3), dtype=np.float64),
                               rtol=1e-6)  # fmt: skip
    assert means["x"].count == x.size // 3


def test_a_batch_with_nan_is_read_whole_as_before() -> None:
    batches = [_batch(7), _batch(8), _batch(9)]
    batches[1][0, 0, 0, 0] = np.nan
    batches[2][1, 2, 3, 4] = np.inf
    cases: list[tuple[Callable[[], Observer], Callable[[], Observer]]] = [
        (partial(HistogramObserver, bins=32), partial(_WholeHistogram, bins=32)),
        (MinMaxObserver, _WholeMinMax),
    ]
    for make, whole_make in cases:
        in_graph, m1 = _collect(make, batches, {"r": 1})
        whole, m2 = _collect(whole_make, batches, {"r": 1})
        for name in ["x", "r", "y"]:
            assert in_graph[name].range() == whole[name].range()
            assert in_graph[name].nonfinite == whole[name].nonfinite
        assert in_graph["x"].nonfinite == 2  # NaN and +Inf skipped, counted
        assert in_graph["r"].nonfinite == 2  # Relu(NaN) = NaN, Relu(Inf) = Inf
        np.testing.assert_allclose(m1["r"].mean(), m2["r"].mean(), rtol=1e-6)
        assert m1["r"].count == m2["r"].count
