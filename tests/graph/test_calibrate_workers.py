"""Calibration in several processes: observers merged exactly (min-max) or within one bin."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest

import quanta
from quanta.cli import main
from quanta.graph import CalibrationData, QuantizeConfig
from quanta.graph.calibrate import collect_statistics
from quanta.quant import HistogramObserver, MeanObserver, MinMaxObserver

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def test_minmax_merge_by_hand() -> None:
    a, b = MinMaxObserver(), MinMaxObserver()
    a.update(np.array([1.0, -2.0, 3.0]))
    b.update(np.array([0.5, 7.0, np.nan]))
    a.merge(b)
    assert a.range() == (-2.0, 7.0) and a.nonfinite == 1 and a.batches == 2


def test_mean_merge_by_hand() -> None:
    a, b = MeanObserver(axis=1), MeanObserver(axis=1)
    a.update(np.array([[1.0, 2.0], [3.0, 4.0]]))  # column sums 4, 6 over 2 rows
    b.update(np.array([[5.0, 6.0]]))
    a.merge(b)
    np.testing.assert_allclose(a.mean(), [3.0, 4.0])


def test_two_workers_give_the_single_process_statistics(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model, images = make_convnet(), make_images(90)
    tensors = ["image", "relu_out", "pool_out"]
    means = {"pool_out": 1}
    one = collect_statistics(model, tensors, CalibrationData({"image": images}, batch_size=7),
                             channel_means=means)  # fmt: skip
    two = collect_statistics(model, tensors, CalibrationData({"image": images}, batch_size=7),
                             channel_means=means, workers=2)  # fmt: skip
    for name in tensors:
        for x, y in zip(one[0][name].range(), two[0][name].range(), strict=True):
            np.testing.assert_array_equal(x, y)  # min-max: exact
    # per-batch channel sums are float32 (ONNX Runtime's ReduceSum), the shards batch differently
    np.testing.assert_allclose(two[1]["pool_out"].mean(), one[1]["pool_out"].mean(), rtol=1e-6)

    hist = partial(HistogramObserver, method="percentile", percentile=99.9)
    h1 = collect_statistics(model, ["relu_out"], CalibrationData({"image": images}, batch_size=7),
                            make_observer=hist)[0]["relu_out"]  # fmt: skip
    h2 = collect_statistics(model, ["relu_out"], CalibrationData({"image": images}, batch_size=7),
                            make_observer=hist, workers=2)[0]["relu_out"]  # fmt: skip
    assert h1.range() == h2.range()  # exact extremes
    width = (float(h1.max_val) - float(h1.min_val)) / h1.bins
    for x, y in zip(h1.range_for(), h2.range_for(), strict=True):
        assert abs(x - y) <= 2 * width  # the documented tolerance: re-binning, two bins
    assert h1.counts is not None and h2.counts is not None
    assert float(h2.counts.sum()) == pytest.approx(float(h1.counts.sum()))


def test_quantize_with_workers_is_byte_identical_for_minmax(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path
) -> None:
    model, images = make_convnet(), make_images(60)
    npz = tmp_path / "c.npz"
    np.savez(npz, image=images)  # streamed from disk by the CLI, split between the workers
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"q{workers}.onnx"
        code = main(["quantize", _save(model, tmp_path),
                     "-o", str(out), "--calibration", str(npz), "--method", "minmax",
                     "--workers", str(workers), "--no-latency-check"])  # fmt: skip
        assert code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    with pytest.raises(Exception, match="workers"):
        QuantizeConfig(workers=0)
    # NOTE: quanta.quantize, as the CLI, also records the TFLite ranges in the metadata
    direct = quanta.quantize(
        model, {"image": images}, method="minmax", workers=2, latency_check=False
    ).model
    assert direct.SerializeToString() == onnx.load_model_from_string(outs[0]).SerializeToString()


def _save(model: onnx.ModelProto, tmp: Path) -> str:
    path = tmp / "m.onnx"
    if not path.exists():
        onnx.save_model(model, path)
    return str(path)
