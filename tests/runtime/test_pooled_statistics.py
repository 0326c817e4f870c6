"""Layout-aware (pooled) calibration statistics and sampled batches against NumPy on tiny graphs."""

from __future__ import annotations

from functools import partial

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from quanta.graph import sampled_statistics
from quanta.graph.calibrate import CalibrationData, collect_statistics
from quanta.graph.sampled_statistics import nonnegative_tensors, sample_strides
from quanta.quant import HistogramObserver, MinMaxObserver
from quanta.runtime.statistics import StatisticsSession


def _net(opset: int = 17) -> onnx.ModelProto:
    """x (N, 3, 4, 5) -> Relu -> r -> Mul(-2) -> y; x -> Clip(0.5, 2) -> c; x -> Clip(-1, 1) -> s;
    y -> Flatten -> f (2-D, not pooled)."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Mul", ["r", "k"], ["y"]),
            helper.make_node("Clip", ["x", "half", "two"], ["c"]),
            helper.make_node("Clip", ["x", "minus_one", "one"], ["s"]),
            helper.make_node("Flatten", ["y"], ["f"]),
        ],
        "pooled_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ["y", "c", "s", "f"]],
        [
            helper.make_tensor(n, TensorProto.FLOAT, [], [v])
            for n, v in [
                ("k", -2.0),
                ("half", 0.5),
                ("two", 2.0),
                ("minus_one", -1.0),
                ("one", 1.0),
            ]
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _values(x: np.ndarray) -> dict[str, np.ndarray]:
    r = np.maximum(x, 0)
    return {"x": x, "r": r, "y": r * -2, "c": np.clip(x, 0.5, 2), "s": np.clip(x, -1, 1),
            "f": (r * -2).reshape(len(x), -1)}  # fmt: skip


def _batch(seed: int, n: int = 2, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 3, 4, 5)) * scale).astype(np.float32)


def test_nonnegative_tensors_by_op_facts_and_clip_bounds() -> None:
    names = ["x", "r", "y", "c", "s", "f"]
    assert nonnegative_tensors(_net(), names) == {"r", "c"}
    old = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Clip", ["x"], ["c"], min=0.0, max=6.0),
                helper.make_node("Clip", ["x"], ["d"], min=-0.5),
            ],  # fmt: skip
            "old_clip",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in "cd"],
        ),
        opset_imports=[helper.make_opsetid("", 6)],
    )
    assert nonnegative_tensors(old, ["x", "c", "d"]) == {"c"}


def test_pooled_summaries_equal_numpy() -> None:
    x = _batch(0) + 0.5  # some of r > 0 everywhere in a channel, c never reaches 0
    session = StatisticsSession(_net(), ["x", "r", "y", "c", "s", "f"], {"r": 1, "x": 1},
                                samples=False, pooled=True, nonnegative={"r", "c"})  # fmt: skip
    assert session.pooled == {"x", "r", "y", "c", "s"}  # f is 2-D: reductions as before
    result = session.run({"x": x})
    assert result is not None
    summaries, sums = result
    for name, value in _values(x).items():
        s = summaries[name]
        # a non-negative tensor's minimum is not computed: 0, which every range includes
        low = 0.0 if name in ("r", "c") else value.min()
        assert (s.minimum, s.maximum, s.size) == (low, value.max(), value.size), name
        assert s.sample is None
    assert summaries["c"].minimum < _values(x)["c"].min()  # 0.5: the bound, not the minimum
    for name in ("r", "x"):
        v = _values(x)[name]
        np.testing.assert_allclose(sums[name].sums, v.sum(axis=(0, 2, 3), dtype=np.float64),
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
        assert sums[name].count == 2 * 4 * 5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (1, 2, 3, 4)])
def test_pooled_a_nan_or_inf_anywhere_is_reported(bad: float, where: tuple[int, ...]) -> None:
    x = _batch(1)
    x[where] = bad
    session = StatisticsSession(_net(), ["x", "r", "c"], {}, samples=False, pooled=True,
                                nonnegative={"r", "c"})  # fmt: skip
    assert session.run({"x": x}) is None
    assert session.run({"x": _batch(1)}) is not None


def test_sample_strides_keep_the_sampled_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampled_statistics, "SAMPLED_VALUES", 1 << 24)
    sizes = {"big": 1 << 20, "mid": 677_376, "small": 9000}
    assert sample_strides(sizes, 19) == {"big": 1, "mid": 1, "small": 1}  # as before
    strides = sample_strides(sizes, 224)
    assert strides == {"big": 12, "mid": 9, "small": 1}  # 14, 9, 0 -> 2^a * 3^b at most
    assert sample_strides({"big": 1 << 20, "mid": 677_376}, 13 * 16) == {"big": 12, "mid": 8}
    assert sample_strides({"big": 1 << 20, "mid": 400_000}, 224) == {"big": 12, "mid": 4}
    for name, k in strides.items():  # every k-th of 224 batches: at least 2^24 values
        assert len(range(0, 224, k)) * sizes[name] >= min(224 * sizes[name], 1 << 24)


def _collect(make: object, batches: list[np.ndarray], means: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    data = CalibrationData({"x": np.concatenate(batches)}, batch_size=len(batches[0]))
    return collect_statistics(_net(), ["x", "r", "y", "c", "f"], data, channel_means=means,
                              make_observer=make)  # type: ignore[arg-type]  # fmt: skip


def test_histograms_count_the_sampled_batches_ranges_see_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sampled_statistics, "SAMPLED_VALUES", 300)
    # five batches of 120 values per tensor: every 2nd sampled (0, 2, 4); the widest (1) is
    # not sampled but widens the range
    batches = [_batch(10 + i, scale=s) for i, s in enumerate([0.5, 8.0, 2.0, 1.0, 1.0])]
    assert sample_strides({"x": 120}, 5) == {"x": 2}
    hists, means = _collect(partial(HistogramObserver, bins=64), batches, {"r": 1})
    values = [_values(b) for b in batches]
    for name in ["x", "r", "y", "c", "f"]:
        every = np.concatenate([v[name].ravel() for v in values])
        lo = 0.0 if name in ("r", "c") else every.min()
        obs = hists[name]
        assert obs.range() == (lo, every.max()), name
        assert obs.batches == 5
        # the counts: every value of the sampled batches, on the final grid, by NumPy alone
        sampled = np.concatenate([values[i][name].ravel() for i in (0, 2, 4)]).astype(np.float64)
        # and the two extremes of each batch not sampled (Relu/Clip outputs report 0 as minimum)
        extremes = [
            (0.0 if name in ("r", "c") else values[i][name].min(), values[i][name].max())
            for i in (1, 3)
        ]
        counted = np.concatenate([sampled, np.ravel(extremes)])
        bins = np.minimum(np.floor((counted - obs.hist_min) / obs.bin_width).astype(int), 63)
        oracle = np.bincount(bins, minlength=64)
        # the grid grew from batch 0's range by whole bins: a value on an edge may sit one bin
        # off the direct binning (floating-point ties), nothing else moves
        assert obs.counts.sum() == oracle.sum(), name
        assert np.abs(np.cumsum(obs.counts) - np.cumsum(oracle)).max() <= 1, name
        assert obs.zeros == np.count_nonzero(sampled == 0)
    # bias correction's means: from the sampled batches only (batch 1's scale 8 left out)
    r = np.maximum(np.concatenate([batches[i] for i in (0, 2, 4)]), 0)
    np.testing.assert_allclose(means["r"].mean(), r.mean(axis=(0, 2, 3), dtype=np.float64),
                               rtol=1e-6)  # fmt: skip
    assert means["r"].count == r.size // 3


def test_minmax_ranges_from_pooled_batches_equal_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a clean batch was read whole, not summarized in the graph")

    monkeypatch.setattr("quanta.graph.calibrate.session_with_outputs", refuse)
    batches = [_batch(20), _batch(21, scale=3.0), _batch(22, scale=0.1)]
    ranges, _ = _collect(MinMaxObserver, batches)
    every = _values(np.concatenate(batches))
    for name, v in every.items():
        if name == "s":
            continue
        lo = 0.0 if name in ("r", "c") else v.min()
        assert ranges[name].range() == (lo, v.max()), name


def test_pooled_means_skipped() -> None:
    x = _batch(3)
    session = StatisticsSession(_net(), ["x", "r", "y"], {"r": 1, "x": 1}, samples=False,
                                pooled=True, nonnegative={"r"}, skip_means={"r"})  # fmt: skip
    # no GlobalAveragePool but x's (its means are still asked for)
    assert sum(n.endswith("_gavg") for n in session._outputs) == 1
    result = session.run({"x": x})
    assert result is not None
    summaries, sums = result
    assert set(sums) == {"x"}
    for name in ("r", "y"):
        v = _values(x)[name]
        lo = 0.0 if name == "r" else v.min()
        assert (summaries[name].minimum, summaries[name].maximum) == (lo, v.max()), name


def _conv_net(head: str) -> onnx.ModelProto:
    """x (N, 8, 6, 6) -> 1x1 Conv -> t -> Relu -> r -> ``head``: GlobalAveragePool (a float
    output) or ArgMax (no float output). ONNX Runtime computes t in NCHWc blocks, where
    GlobalMaxPool and ReduceMin skip a NaN."""
    w = np.random.default_rng(5).standard_normal((8, 8, 1, 1)).astype(np.float32)
    last = (
        helper.make_node("GlobalAveragePool", ["r"], ["out"])
        if head == "pool"
        else helper.make_node("ArgMax", ["r"], ["out"], axis=1)
    )
    out_type = TensorProto.FLOAT if head == "pool" else TensorProto.INT64
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["t"]), helper.make_node("Relu", ["t"], ["r"]), last],
        "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 6, 6])],
        [helper.make_tensor_value_info("out", out_type, None)],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("head", ["pool", "argmax"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_pooled_nan_check_from_outputs_or_means(head: str, bad: float) -> None:
    session = StatisticsSession(_conv_net(head), ["t"], {}, samples=False, pooled=True)
    assert session.pooled == {"t"}
    x = np.random.default_rng(6).standard_normal((4, 8, 6, 6)).astype(np.float32)
    assert session.run({"x": x}) is not None
    for n, h, w in [(0, 0, 0), (1, 2, 3), (3, 5, 5), (2, 4, 1)]:
        y = x.copy()
        y[n, 3, h, w] = bad
        assert session.run({"x": y}) is None, (n, h, w)


def test_a_pooled_batch_with_nan_or_inf_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampled_statistics, "SAMPLED_VALUES", 300)
    batches = [_batch(30 + i) for i in range(5)]  # 0, 2, 4 sampled; 1 and 3 pooled
    batches[1][0, 1, 2, 3] = np.nan
    batches[3][1, 2, 3, 4] = np.inf
    data = CalibrationData({"x": np.concatenate(batches)}, batch_size=2)
    # no 2-D tensor observed: its every-batch ReduceSum would catch them as well
    ranges, _ = collect_statistics(_net(), ["x", "r", "y", "c"], data,
                                   make_observer=partial(HistogramObserver, bins=64))  # fmt: skip
    finite = [np.where(np.isfinite(b), b, 0.0) for b in batches]
    x = np.concatenate([b.ravel() for b in batches])
    assert ranges["x"].range() == (x[np.isfinite(x)].min(), x[np.isfinite(x)].max())
    assert ranges["x"].nonfinite == 2  # the whole-tensor path counted them
    assert ranges["y"].range()[0] == min((np.maximum(b, 0) * -2).min() for b in finite)


def test_a_long_runs_sample_inside_the_blocked_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    # every 2nd row and column, all channels: the values NumPy's slicing gives, exact extremes
    x = _batch(30, n=3)
    session = StatisticsSession(_net(), ["x", "r", "y", "f"], {"r": 1}, samples={"r", "y", "f"},
                                pooled=True, nonnegative={"r"},
                                spatial_steps={"r": 2, "y": 3})  # fmt: skip
    summaries, sums = session.run({"x": x})
    v = _values(x)
    for name, step in [("r", 2), ("y", 3)]:
        s = summaries[name]
        expected = v[name][:, :, ::step, ::step]
        assert np.array_equal(np.sort(s.sample.ravel()), np.sort(expected.ravel())), name
        assert (s.size, s.maximum) == (v[name].size, v[name].max())
    assert summaries["y"].minimum == v["y"].min() and summaries["r"].minimum == 0.0
    assert summaries["f"].sample.size == v["f"].size  # 2-D: the flat sample, as before
    assert summaries["x"].sample is None  # not sampled: pooled only
    np.testing.assert_allclose(sums["r"].sums, v["r"].sum(axis=(0, 2, 3)), rtol=1e-5)
    x[0, 1, 2, 2] = np.nan  # in r's sample (row 2, column 2)
    assert session.run({"x": x}) is None
    # the step: the smallest that leaves at most SAMPLE_CAP values of the batch
    shapes = {"r": (None, 3, 4, 5), "f": (3, 60)}  # r: 9 values per pixel (3 samples, 3 channels)
    for cap, step in [(180, 1), (179, 2), (54, 2), (53, 3), (18, 4)]:  # 180, 54, 36, 18 values
        monkeypatch.setattr(sampled_statistics, "SAMPLE_CAP", cap)
        assert sampled_statistics.spatial_steps(summaries, shapes) == {"r": step}, cap
