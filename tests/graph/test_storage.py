"""Float16 storage of LSTM/GRU weights when int8 storage costs the fidelity target
(``quanta.graph.storage``): chosen only where the target is missed and the file stays at least
``SIZE_FLOOR`` times smaller than float, kept only when it measures better.

Oracle: the float model in ONNX Runtime on fresh samples, and the initializers' dtypes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static, static, weight_only
from quanta.graph.result import FidelityReport
from quanta.graph.storage import SIZE_FLOOR, _better
from quanta.runtime import run_model
from quanta.runtime.fidelity import argmax_agreement

N, T, IN, MID, HIDDEN, C = 1, 12, 384, 16, 32, 4
CONFIG = QuantizeConfig(min_fidelity=0.997, latency_check=False)


def tagger(wide: int = IN) -> onnx.ModelProto:
    """``x (N, T, wide) -> MatMul -> MatMul -> GRU -> MatMul -> y (N, T, C)``: a tagger whose
    bytes sit in the first MatMul, with a GRU of large weights whose int8 rounding changes the
    class at some positions."""
    nodes = [
        helper.make_node("MatMul", ["x", "p1"], ["a"], name="p1"),
        helper.make_node("MatMul", ["a", "p2"], ["b"], name="p2"),
        helper.make_node("Transpose", ["b"], ["bt"], perm=[1, 0, 2]),  # (T, N, MID)
        helper.make_node("GRU", ["bt", "W", "R"], ["y4"], name="gru", hidden_size=HIDDEN),
        helper.make_node("Squeeze", ["y4", "one"], ["y3"]),  # (T, N, HIDDEN)
        helper.make_node("Transpose", ["y3"], ["h"], perm=[1, 0, 2]),  # (N, T, HIDDEN)
        helper.make_node("MatMul", ["h", "head"], ["y"], name="head"),
    ]
    inits = {
        "p1": rand(wide, wide, seed=5, std=0.05),
        "p2": rand(wide, MID, seed=6, std=0.1),
        "W": rand(1, 3 * HIDDEN, MID, seed=7, std=1.0),  # (D, gates * H, IN)
        "R": rand(1, 3 * HIDDEN, HIDDEN, seed=8, std=1.0),
        "head": rand(HIDDEN, C, seed=4, std=1.0),
        "one": np.array([1], np.int64),
    }
    return make_model(nodes, {"x": ["N", T, wide]}, {"y": ["N", T, C]}, inits, "tagger")


def data(wide: int = IN) -> CalibrationData:
    return CalibrationData({"x": rand(96, T, wide, seed=9, std=1.0)})


def float16_tensors(model: onnx.ModelProto) -> set[str]:
    """Float16 initializers other than the float16 scales of int8 decoders (the second input
    of ``Mul(Cast(q), Cast(scale))``, graph/half_scales.py)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    scales = {
        producer[n.input[1]].input[0]
        for n in model.graph.node
        if n.op_type == "Mul" and n.input[1] in producer and producer[n.input[1]].op_type == "Cast"
    }
    return {
        t.name
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT16 and t.name not in scales
    }


def gru_weight_storage(model: onnx.ModelProto) -> list[int]:
    """The stored dtype of the GRU's W and R, found by following each back through its decoder
    (``Cast``, ``Mul`` by scales) to the initializer that holds it."""
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    gru = next(n for n in model.graph.node if n.op_type == "GRU")
    found = []
    for name in gru.input[1:3]:
        while name not in inits:
            node = producer[name]
            assert node.op_type in ("Cast", "Mul"), node.op_type
            name = node.input[0]
        found.append(inits[name].data_type)
    return found


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def test_a_missed_target_stores_the_gru_weights_float16_within_the_size_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NOTE: this tiny tagger's int8 build is a near tie with its float16 one (cosine 0.9766
    # against 0.9765 with float16 decoder scales, graph/half_scales.py): the test pins the int8
    # weights' float32 scales so that it checks the storage step, not that tie
    monkeypatch.setattr(weight_only, "half_scales", lambda *_: None)
    model = tagger()
    result = quantize_static(model, data(), CONFIG)
    fp16 = onnx.TensorProto.FLOAT16
    assert gru_weight_storage(result.model) == [fp16, fp16]
    assert len(float16_tensors(result.model)) == 2  # W and R, nothing else
    assert sum(n.startswith("2 recurrent weight(s) (LSTM/GRU") for n in result.notes) == 1
    report = result.fidelity
    assert report is not None and report.agreement is not None
    assert len(model.SerializeToString()) / len(result.model.SerializeToString()) >= SIZE_FLOOR
    # the same quantization with the storage step off keeps W and R int8
    monkeypatch.setattr(static, "store_recurrent_fp16", lambda b, built, r, *_: (built, r))
    int8 = quantize_static(model, data(), CONFIG).model
    assert not float16_tensors(int8)
    assert gru_weight_storage(int8) == [onnx.TensorProto.INT8, onnx.TensorProto.INT8]
    # checked in ONNX Runtime on fresh samples: closer to float, and more positions agree
    fresh = {"x": rand(64, T, IN, seed=11, std=1.0)}
    reference = run_model(model, fresh)
    ours, theirs = run_model(result.model, fresh), run_model(int8, fresh)
    assert rms(ours[0] - reference[0]) < 0.9 * rms(theirs[0] - reference[0])
    assert argmax_agreement(ours, reference) > argmax_agreement(theirs, reference)


def test_no_float16_where_it_would_break_the_size_floor() -> None:
    # the GRU holds most of the bytes: float16 would leave the file under 3.5x smaller
    result = quantize_static(tagger(wide=MID), data(wide=MID), CONFIG)
    assert result.fidelity is not None and not result.fidelity.met
    assert not float16_tensors(result.model)
    assert not any("recurrent weight(s)" in n for n in result.notes)


def judged_report(achieved: float, agreement: float) -> FidelityReport:
    met = achieved >= 0.997 and agreement >= 0.99
    return FidelityReport(
        0.997, achieved, met, 24, 72, achieved, agreement=agreement, agreement_target=0.99
    )


def test_a_rebuild_counts_as_better_only_on_the_measures_that_missed() -> None:
    old = judged_report(0.999, 0.95)  # the agreement missed, the cosine met
    assert _better(judged_report(0.998, 0.96), old)  # the missed one rose, the met one held
    assert not _better(judged_report(0.9995, 0.95), old)  # only a met measure rose
    assert not _better(judged_report(0.996, 0.97), old)  # the met cosine now misses
    assert _better(judged_report(0.998, 0.995), old)  # every target met
