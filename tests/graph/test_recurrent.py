"""LSTM and GRU: W and R stored as int8 in every mode; dynamic LSTM runs as DynamicQuantizeLSTM.

Oracle: the float model in ONNX Runtime. The gates' outputs lie in [-1, 1]; int8 weights with one
scale per gate row move them by about 0.01 here, so outputs are compared within 0.02 (0.04 where
dynamic mode rounds the activations too).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.dynamic import quantize_dynamic
from quanta.runtime import make_session

T, N, IN, HIDDEN = 6, 2, 24, 32
GATES = {"LSTM": 4, "GRU": 3}


def recurrent_model(op: str, *, directions: int = 1) -> onnx.ModelProto:
    """``x (T, N, IN) -> MatMul -> LSTM/GRU -> y (T, D, N, HIDDEN)``; the MatMul gives static
    mode something to quantize in int8."""
    rows = GATES[op] * HIDDEN
    direction = "bidirectional" if directions == 2 else "forward"
    nodes = [
        helper.make_node("MatMul", ["x", "proj"], ["p"], name="proj"),
        helper.make_node(
            op, ["p", "W", "R", "B"], ["y"], name="rnn", hidden_size=HIDDEN, direction=direction
        ),
    ]
    inits = {
        "proj": rand(IN, IN, seed=0, std=0.2),
        "W": rand(directions, rows, IN, seed=1, std=0.2),  # (D, gates * H, IN)
        "R": rand(directions, rows, HIDDEN, seed=2, std=0.2),  # (D, gates * H, H)
        "B": rand(directions, 2 * rows, seed=3, std=0.1),
    }
    # the time axis is dynamic, so calibration can feed samples (time steps) along axis 0
    return make_model(nodes, {"x": ["T", N, IN]}, {"y": ["T", directions, N, HIDDEN]}, inits)


def samples() -> np.ndarray:
    return rand(T, N, IN, seed=4, std=1.0)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {"x": x})[0]


def int8_tensors(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}


def float_tensors(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def stored(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The recurrent node's W and R as stored: (int8 values, scales), read directly by
    DynamicQuantizeLSTM (scales: None here) or through ``Cast(q) * scale`` decoders (compact QDQ
    gives the stored tensors short names)."""
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    rnn = next(n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "DynamicQuantizeLSTM"))
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name, slot in (("W", 1), ("R", 2)):
        if rnn.input[slot] in consts:
            out[name] = (consts[rnn.input[slot]], None)
            continue
        mul = producer.get(rnn.input[slot])
        if mul is None or mul.op_type != "Mul" or producer[mul.input[0]].op_type != "Cast":
            continue
        scale = mul.input[1]  # float32, or float16 widened by a Cast (graph/half_scales.py)
        scales = consts[scale] if scale in consts else consts[producer[scale].input[0]]
        out[name] = (consts[producer[mul.input[0]].input[0]], scales.astype(np.float32))
    return out


def static(model: onnx.ModelProto) -> onnx.ModelProto:
    data = CalibrationData({"x": rand(8 * T, N, IN, seed=5, std=1.0)})
    return quantize_static(model, data, QuantizeConfig(min_fidelity=None)).model


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_weights_are_int8_and_outputs_stay_close(mode: str, op: str, directions: int) -> None:
    model = recurrent_model(op, directions=directions)
    q = static(model) if mode == "static" else quantize_dynamic(model).model
    assert {"W", "R"}.isdisjoint(float_tensors(q)), "a float W or R is still in the file"
    weights = stored(q)
    assert weights.keys() == {"W", "R"} and all(v.dtype == np.int8 for v, _ in weights.values())
    x = samples()
    # static: int8 weights and an int8 input (its range from 3/4 of the calibration samples,
    # the rest held out to choose the method); dynamic mode also rounds the activations to 8
    # bits at run time, every step
    np.testing.assert_allclose(run(q, x), run(model, x), atol=0.03 if mode == "static" else 0.04)
    # three weight tensors: 4 bytes a value in float, 1 in int8; B, the scales (one per gate
    # row) and the nodes take the rest at this tiny size
    assert q.ByteSize() * 2.5 < model.ByteSize()


def test_dynamic_lstm_runs_as_dynamic_quantize_lstm() -> None:
    model = recurrent_model("LSTM", directions=2)
    result = quantize_dynamic(model)
    ops = Counter(n.op_type for n in result.model.graph.node)
    assert ops["DynamicQuantizeLSTM"] == 1 and ops["LSTM"] == 0
    assert any(o.domain == "com.microsoft" for o in result.model.opset_import)
    assert any("1 LSTM run as int8 DynamicQuantizeLSTM" in note for note in result.notes)


def test_gru_and_static_lstm_decode_their_weights_at_session_start() -> None:
    for op in ("GRU", "LSTM"):
        q = static(recurrent_model(op))
        assert Counter(n.op_type for n in q.graph.node)[op] == 1
        assert stored(q).keys() == {"W", "R"}, op


def test_batch_first_lstm_keeps_onnx_lstm_in_dynamic_mode() -> None:
    model = recurrent_model("LSTM")
    rnn = next(n for n in model.graph.node if n.op_type == "LSTM")
    rnn.attribute.append(helper.make_attribute("layout", 1))
    q = quantize_dynamic(model)
    assert Counter(n.op_type for n in q.model.graph.node)["LSTM"] == 1
    assert [f.name for f in q.float_nodes] == ["rnn"]
    assert "layout=1" in q.float_nodes[0].reason
    weights = stored(q.model)  # still stored as int8
    assert weights.keys() == {"W", "R"} and all(v.dtype == np.int8 for v, _ in weights.values())


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_each_direction_has_its_own_scale_per_gate_row(op: str) -> None:
    """A bidirectional layer's backward weights 20x smaller than its forward ones: with one
    scale per gate row shared by both directions, the backward rows would keep about 6 of
    int8's 127 levels. Golden: every stored value is within half a step of its own
    direction's row grid (step = the row's max |w| / 127)."""
    model = recurrent_model(op, directions=2)
    for init in model.graph.initializer:
        if init.name in ("W", "R"):
            w = onnx.numpy_helper.to_array(init).copy()
            w[1] *= 0.05  # the backward direction
            init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    q = static(model)
    for name, (values, scale) in stored(q).items():
        assert scale is not None, name
        assert scale.shape == (2, GATES[op] * HIDDEN, 1)  # (directions, gate rows, 1)
        decoded = values.astype(np.float32) * scale
        w = weights[name]
        half_step = np.abs(w).max(axis=2, keepdims=True) / 127 / 2
        # float16 scales (graph/half_scales.py) are at most one float16 step (2**-10) coarser
        assert np.all(np.abs(decoded - w) <= half_step * (1 + 2**-10)), name
    # ONNX Runtime folds the (2, rows, 1) scales as it does one per row (the tolerance of
    # test_weights_are_int8_and_outputs_stay_close)
    x = samples()
    np.testing.assert_allclose(run(q, x), run(model, x), atol=0.03)
