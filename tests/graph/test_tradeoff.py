"""What the fidelity fallback cost in speed (graph/tradeoff.py): one note with the figures and
how to ask for the faster model, when the fully int8 build runs clearly faster than the model
kept. Timers are injected (fixed figures: tests never assert on measured speed); the suggested
``--min-fidelity`` is checked by quantizing again with it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import pytest
from test_fallback import outlier_calibration, sensitive_mlp

from quanta.graph import CalibrationData, QuantizeConfig, latency, quantize_static
from quanta.graph.latency import Timer
from quanta.graph.result import FidelityReport, FloatKind
from quanta.graph.tradeoff import speed_cost_note

REPORT = FidelityReport(
    target=0.997, achieved=0.9986, met=True, held_out=27, calibrated=84, before=0.99337,
    kept_float=1,
)  # fmt: skip
ONE = {"x": np.zeros((4, 8), np.float32)}


class FixedTimer(Timer):
    """Batch-1 timings answered from ``figures``; fails the test if asked twice."""

    def __init__(self, figures: Sequence[float] | None) -> None:
        super().__init__()
        object.__setattr__(self, "figures", figures)

    def batch1_ms(
        self, models: Sequence[onnx.ModelProto], feeds: Mapping[str, np.ndarray]
    ) -> list[float]:
        assert self.figures is not None, "no timing was expected"  # type: ignore[attr-defined]
        assert all(len(v) == 1 for v in feeds.values())  # batch 1
        return list(self.figures)  # type: ignore[attr-defined]


def _note(figures: Sequence[float] | None, report: FidelityReport = REPORT, n_kept: int = 1):  # type: ignore[no-untyped-def]
    m = onnx.ModelProto()
    return speed_cost_note(m, m, m, ONE, report, n_kept, FixedTimer(figures))


def test_note_gives_both_speeds_and_the_fidelity_that_buys_them() -> None:
    note = _note([4.0, 4.0, 2.0])
    assert note is not None
    assert "the 1 node(s) kept float for fidelity cost speed" in note
    assert "4.000 ms (1.00× float) against 2.000 ms (2.00×) fully int8" in note
    assert "mean output cosine to float 0.9934 on 27 held-out calibration samples" in note
    # the target that the fully int8 build meets, rounded down so that it does meet it
    assert "--min-fidelity 0.9933 or --mode auto --eval DATA" in note


def test_no_note_within_the_noise_band_or_without_nodes_kept_for_fidelity() -> None:
    assert _note([4.0, 4.0, 3.7]) is None  # 7.5 % faster: within the 10 % band
    assert _note([4.0, 4.0, 3.5]) is not None
    assert _note(None, n_kept=0) is None  # and nothing is timed


def test_agreement_targets_are_not_set_by_min_fidelity() -> None:
    report = FidelityReport(
        target=0.997, achieved=0.998, met=False, held_out=24, calibrated=72, before=0.9866,
        kept_float=10, agreement=0.9812, agreement_before=0.9719, agreement_target=0.9993,
    )  # fmt: skip
    note = _note([11.4, 9.1, 6.0], report, n_kept=10)
    assert note is not None
    assert "per-position argmax agreement 0.9719" in note
    assert "--mode auto --eval DATA writes the faster model" in note
    assert "--min-fidelity" not in note


class QuantizeCountTimer(Timer):
    """A model's batch-1 time falls 0.2 ms per activation QuantizeLinear (float: 1 ms), so
    the more of the model is int8 the faster it reads; no node is profiled slower."""

    def node_times(
        self, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, float]:
        return {}

    def batch1_ms(
        self, models: Sequence[onnx.ModelProto], feeds: Mapping[str, np.ndarray]
    ) -> list[float]:
        return [1.0 - 0.2 * _activation_quantizers(m) for m in models]


def _activation_quantizers(model: onnx.ModelProto) -> int:
    inits = {i.name for i in model.graph.initializer}
    return sum(n.op_type == "QuantizeLinear" and n.input[0] not in inits for n in model.graph.node)


def _quantize(min_fidelity: float, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(latency, "DEFAULT_TIMER", QuantizeCountTimer())
    config = QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=min_fidelity)
    return quantize_static(sensitive_mlp(), CalibrationData({"x": outlier_calibration()}), config)


def test_static_says_what_the_fallback_cost_and_the_suggestion_writes_the_faster_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    safe = _quantize(0.999, monkeypatch)
    assert [f.name for f in safe.float_nodes if f.kind is FloatKind.ACCURACY] == ["fc1"]
    (note,) = [n for n in safe.notes if n.startswith("speed:")]
    fast = 1.0 - 0.2 * _activation_quantizers(quantize_static(
        sensitive_mlp(), CalibrationData({"x": outlier_calibration()}),
        QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=None),
    ).model)  # fmt: skip
    kept = 1.0 - 0.2 * _activation_quantizers(safe.model)
    assert fast < 0.9 * kept
    assert f"{kept:.3f} ms ({1 / kept:.2f}× float) against {fast:.3f} ms" in note
    match = re.search(r"--min-fidelity (0\.\d{4}) ", note)
    assert match is not None
    faster = _quantize(float(match.group(1)), monkeypatch)
    assert not any(f.kind is FloatKind.ACCURACY for f in faster.float_nodes)
    assert faster.fidelity is not None and faster.fidelity.met
    assert not any(n.startswith("speed:") for n in faster.notes)


def test_no_speed_note_when_the_fallback_kept_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _quantize(0.5, monkeypatch)
    assert not any(f.kind is FloatKind.ACCURACY for f in result.float_nodes)
    assert not any(n.startswith("speed:") for n in result.notes)
