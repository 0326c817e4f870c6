"""Held-out fidelity: calibration never sees the samples fidelity is judged on (seeded split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper
from tiny_graphs import make_model, rand

from quanta.data import load_npz
from quanta.data.arrays import NpyMember
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.calibrate import collect_ranges
from quanta.graph.holdout import hold_out


def relu_model() -> onnx.ModelProto:
    """x (N, 4) -> Relu -> y: the observed range of y is the calibration samples' maximum."""
    return make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], {"x": ["N", 4]}, {"y": ["N", 4]}, {}
    )


def numbered(n: int) -> np.ndarray:
    """Sample i is the row (i, i, i, i): a batch says which samples it holds."""
    return np.repeat(np.arange(n, dtype=np.float32)[:, None], 4, axis=1)


def seen(data: CalibrationData) -> list[int]:
    return [int(v) for b in data.batches(relu_model(), 3) for v in b["x"][:, 0]]


def test_a_quarter_is_held_out_by_a_seeded_permutation_and_never_calibrates() -> None:
    split = hold_out(CalibrationData({"x": numbered(40)}), 32)
    assert (split.held_out, split.calibrated) == (10, 30)  # min(32, 40 // 4)
    held = [int(v) for v in split.feeds["x"][:, 0]]
    calibrated = seen(split.calibration)
    assert sorted(held + calibrated) == list(range(40))  # disjoint, nothing lost
    assert held != list(range(10))  # not the first samples (what was scored before)
    assert split.calibration.num_batches(relu_model(), 3) == len(
        list(split.calibration.batches(relu_model(), 3))
    )
    # the same split on every run
    again = hold_out(CalibrationData({"x": numbered(40)}), 32)
    assert [int(v) for v in again.feeds["x"][:, 0]] == held
    assert split.describe() == "calibrated on 30 samples, fidelity on 10 held out"


def test_at_most_the_wanted_count_is_held_out() -> None:
    split = hold_out(CalibrationData({"x": numbered(400)}), 32)
    assert (split.held_out, split.calibrated, len(split.feeds["x"])) == (32, 368, 32)


def test_a_held_out_outlier_does_not_stretch_the_calibrated_range() -> None:
    x = rand(40, 4, seed=1)
    split = hold_out(CalibrationData({"x": x}), 32)
    held = int(np.flatnonzero(~np.isin(x[:, 0], seen_rows(split.calibration)))[0])
    x[held] = 1000.0  # only in a held-out sample
    split = hold_out(CalibrationData({"x": x}), 32)
    (observer,) = collect_ranges(relu_model(), ["y"], split.calibration).values()
    assert float(np.max(observer.range()[1])) < 10.0
    (whole,) = collect_ranges(relu_model(), ["y"], CalibrationData({"x": x})).values()
    assert float(np.max(whole.range()[1])) == 1000.0  # the oracle: it would have


def seen_rows(data: CalibrationData) -> np.ndarray:
    return np.concatenate([b["x"][:, 0] for b in data.batches(relu_model(), 7)])


def test_lazily_read_arrays_stay_lazy(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", x=numbered(20))
    arrays, _ = load_npz(tmp_path / "c.npz", input_names=["x"], stream=True)
    data = CalibrationData(arrays)
    assert isinstance(data.arrays["x"], NpyMember)
    split = hold_out(data, 32)
    assert isinstance(split.calibration.arrays["x"], NpyMember)
    held = [int(v) for v in split.feeds["x"][:, 0]]
    assert sorted(held + seen(split.calibration)) == list(range(20))


def test_worker_shards_cover_exactly_the_calibration_samples() -> None:
    split = hold_out(CalibrationData({"x": numbered(40)}), 32)
    shards = split.calibration.split(3)
    assert sum(s.count for s in shards) == 30
    assert [v for s in shards for v in seen(s)] == seen(split.calibration)


def test_too_few_samples_hold_nothing_out_and_say_so() -> None:
    split = hold_out(CalibrationData({"x": numbered(3)}), 32)
    assert (split.held_out, split.calibrated, len(split.feeds["x"])) == (0, 3, 3)
    assert "none held out" in split.where()
    assert "too few to hold any out" in split.describe()


# --- the result carries the fidelity target's outcome ---------------------------------------


def mlp() -> onnx.ModelProto:
    """x (N, 8) -> Gemm -> Relu -> Gemm -> y (N, 4)."""
    return make_model(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
        ],
        {"x": ["N", 8]},
        {"y": ["N", 4]},
        {"w1": rand(16, 8, seed=3), "b1": rand(16, seed=4, std=0.1), "w2": rand(4, 16, seed=5),
         "b2": rand(4, seed=6, std=0.1)},
    )  # fmt: skip


def test_missed_target_is_reported_not_met() -> None:
    data = CalibrationData({"x": rand(64, 8, seed=9, std=1.0)})
    # no latency check: it could keep float compute for answers instead (graph/float_compute)
    config = QuantizeConfig(
        method="minmax", activation_type="int8", min_fidelity=1.0, max_float=0, latency_check=False
    )
    report = quantize_static(mlp(), data, config).fidelity
    assert report is not None
    assert (report.held_out, report.calibrated, report.target) == (16, 48, 1.0)
    assert not report.met and report.achieved < 1.0 and report.kept_float == 0
    line = report.summary()
    assert line.startswith(f"fidelity target 1 not met: {report.achieved:.4f} fully int8")
    assert "try --mode auto or --max-float N" in line
    assert report.as_dict()["met"] is False


def test_met_target_and_no_target() -> None:
    data = CalibrationData({"x": rand(64, 8, seed=9, std=1.0)})
    config = QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=0.9)
    report = quantize_static(mlp(), data, config).fidelity
    assert report is not None and report.met and report.achieved >= 0.9
    assert report.summary().startswith("fidelity target 0.9 met:")
    none = QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=None)
    assert quantize_static(mlp(), data, none).fidelity is None


def test_a_fixed_batch_calibrates_in_calls_of_its_size_without_the_held_out_samples() -> None:
    fixed = make_model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], {"x": [2, 4]}, {"y": [2, 4]}, {}
    )
    split = hold_out(CalibrationData({"x": numbered(40)}), 32)
    assert (split.held_out, split.calibrated) == (10, 30)
    batches = list(split.calibration.batches(fixed))
    assert all(len(b["x"]) == 2 for b in batches)  # the size the model accepts, every call
    calibrated = [int(v) for b in batches for v in b["x"][:, 0]]
    held = {int(v) for v in split.feeds["x"][:, 0]}
    assert sorted(calibrated) == sorted(set(range(40)) - held)  # 30 kept: 15 full calls
    assert not held & set(calibrated)
