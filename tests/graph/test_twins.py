"""Twin nodes (an unrolled recurrent cell's steps, reading one weight) are one candidate of
the accuracy-aware fallback: kept float together, ranked by one model build."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper
from test_latency import FixedTimer
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, latency, quantize_static
from quanta.graph.result import FloatKind
from quanta.graph.twins import twin_groups, weight_sharers

STEPS = 6


def _unrolled(shared: bool) -> onnx.ModelProto:
    """h_t = Tanh(Gemm(h_{t-1}, U)) for six steps from h_-1 = x: one U for every step (a
    recurrent cell unrolled), or one per step (six different layers)."""
    nodes, inits = [], {}
    h = "x"
    for t in range(STEPS):
        u = "u" if shared else f"u{t}"
        inits[u] = rand(16, 16, seed=0 if shared else t, std=0.6)
        nodes.append(helper.make_node("Gemm", [h, u], [f"g{t}"], name=f"gemm{t}"))
        nodes.append(helper.make_node("Tanh", [f"g{t}"], [f"h{t}"], name=f"tanh{t}"))
        h = f"h{t}"
    return make_model(nodes, {"x": ["N", 16]}, {h: ["N", 16]}, inits)


def test_steps_far_enough_from_the_input_are_twins() -> None:
    model = _unrolled(shared=True)
    names = [n.name for n in model.graph.node]
    # the first steps still see the graph input within DEPTH producers, so they differ
    assert twin_groups(model, names) == [
        ["gemm0"], ["tanh0"], ["gemm1"], ["tanh1"], ["gemm2"],
        ["tanh2", "tanh3", "tanh4", "tanh5"], ["gemm3", "gemm4", "gemm5"],
    ]  # fmt: skip


def test_different_weights_are_never_twins() -> None:
    model = _unrolled(shared=False)
    names = [n.name for n in model.graph.node]
    assert twin_groups(model, names) == [[n] for n in names]


def test_fallback_ranks_and_keeps_twins_as_one() -> None:
    model = _unrolled(shared=True)
    calib = rand(96, 16, seed=3, std=2.0)
    config = QuantizeConfig(
        min_fidelity=0.9999999,  # out of reach: every allowed candidate is tried
        max_float=4, latency_check=False, method="minmax", activation_type="int8",
        weight_rounding="nearest",
    )  # fmt: skip
    result = quantize_static(model, CalibrationData({"x": calib}), config)
    kept = {f.name for f in result.float_nodes if f.kind is FloatKind.ACCURACY}
    # four candidates (gemm0, gemm1, gemm2 and the twins gemm3-5), all four kept: six nodes
    assert kept == {f"gemm{t}" for t in range(STEPS)}, kept
    # one fully int8 run, one damage run per candidate (4, not 6), one per prefix tried (4)
    assert any("6 node(s) kept float" in n and "9 evaluations" in n for n in result.notes), (
        result.notes
    )


def test_nodes_reading_one_weight_are_kept_float_for_speed_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _unrolled(shared=True)
    assert weight_sharers(model, [n.name for n in model.graph.node]) == [
        [f"gemm{t}" for t in range(STEPS)]
    ]
    assert weight_sharers(_unrolled(shared=False), [n.name for n in model.graph.node]) == []
    config = QuantizeConfig(min_fidelity=None, method="minmax", activation_type="int8")
    data = CalibrationData({"x": rand(32, 16, seed=3, std=2.0)})

    def speed_kept(int8_ms: dict[str, float], batch1: list[float]) -> set[str]:
        monkeypatch.setattr(latency, "DEFAULT_TIMER", FixedTimer(int8_ms, batch1=batch1))
        result = quantize_static(model, data, config)
        weights = [t for t in result.model.graph.initializer if list(t.dims) == [16, 16]]
        assert len(weights) == 1  # the shared weight, stored once
        return {f.name for f in result.float_nodes if f.kind is FloatKind.SPEED}

    # one step's Gemm slow in int8 (3 ms against 1 ms float; the others 0.5): the six steps
    # together take 5.5 ms against 6 ms, so none is kept float (alone, gemm4 would be)
    assert speed_kept({"gemm4": 3.0}, [2.0, 1.0]) == set()
    # 9 ms: together 11.5 ms against 6 ms, so all six are, and the shared weight is stored once
    assert speed_kept({"gemm4": 9.0}, [2.0, 1.0, 0.8]) == {f"gemm{t}" for t in range(STEPS)}
