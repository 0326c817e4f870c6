"""Bias correction: the int32 bias carries the expected shift of the weight rounding error."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.bias_correction import bias_shift
from quanta.graph.compact import expand_qdq
from quanta.graph.holdout import hold_out
from quanta.graph.rewrite import quantize_weight
from quanta.quant import dequantize


def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _conv_model(groups: int, bias: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.3, (4, 4 // groups, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b"))
        inputs.append("b")
    conv = helper.make_node("Conv", inputs, ["y"], name="conv", group=groups, pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [conv],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 6, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_depthwise_shift_by_hand() -> None:
    # depthwise (group = channels): each output channel sees one input channel, so the shift is
    # that channel's summed weight error times that channel's mean input
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=2)
    w = np.array([[[[0.5, 0.25]]], [[[1.0, -1.0]]]], np.float32)  # (2, 1, 1, 2)
    wq = np.array([[[[0.5, 0.0]]], [[[1.0, -0.5]]]], np.float32)
    mean = np.array([2.0, 4.0])
    # channel 0: (0 + 0.25) * 2 = 0.5; channel 1: (0 + -0.5) * 4 = -2
    np.testing.assert_allclose(bias_shift(node, w, wq, mean), [0.5, -2.0])


def test_gemm_shift_by_hand() -> None:
    node = helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)
    w = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)  # (N=2, K=2)
    wq = np.array([[1.0, 1.5], [3.5, 4.0]], np.float32)
    mean = np.array([10.0, 1.0])
    # n=0: 0*10 + 0.5*1 = 0.5; n=1: -0.5*10 + 0*1 = -5
    np.testing.assert_allclose(bias_shift(node, w, wq, mean), [0.5, -5.0])


def test_static_bias_is_corrected_with_the_calibration_mean() -> None:
    model = _conv_model(groups=1, bias=True)
    x = np.random.default_rng(0).uniform(0.0, 2.0, (16, 4, 6, 6)).astype(np.float32)
    result = quantize_static(model, CalibrationData({"x": x}), QuantizeConfig())
    plain = expand_qdq(result.model)  # the bias scale is a Mul in the compact file
    c = _consts(plain)
    w = _consts(model)["w"]
    q, qp = quantize_weight(w, 0)
    # the mean over the samples that calibrated: all but the ones held out for fidelity
    calibrated = hold_out(CalibrationData({"x": x}), QuantizeConfig().holdout_samples).calibration
    seen = np.concatenate([b["x"] for b in calibrated.batches(model)])  # (12, 4, 6, 6)
    expected = _consts(model)["b"] + bias_shift(
        model.graph.node[0], w, dequantize(q, qp), seen.mean(axis=(0, 2, 3))
    )
    producer = {o: n for n in plain.graph.node for o in n.output}
    (conv,) = [n for n in plain.graph.node if n.op_type == "Conv"]
    bias_dq = producer[conv.input[2]]
    stored = c[bias_dq.input[0]].astype(np.float64) * c[bias_dq.input[1]]
    scale = c[bias_dq.input[1]]
    assert np.all(np.abs(stored - expected) <= scale / 2 * (1 + 1e-6))
    assert any("bias correction" in note for note in result.notes)


def test_a_conv_without_bias_gets_one_when_corrected() -> None:
    model = _conv_model(groups=4, bias=False)
    x = np.random.default_rng(1).uniform(0.0, 1.0, (8, 4, 6, 6)).astype(np.float32)
    q = quantize_static(model, CalibrationData({"x": x}), QuantizeConfig()).model
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    assert len(conv.input) == 3 and conv.input[2]
    off = quantize_static(model, CalibrationData({"x": x}), QuantizeConfig(bias_correction=False))
    conv = next(n for n in off.model.graph.node if n.op_type == "Conv")
    assert len(conv.input) == 2 or not conv.input[2]


def test_correction_lowers_the_output_mean_error() -> None:
    import onnxruntime as ort

    model = _conv_model(groups=4, bias=True)
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 3.0, (64, 4, 6, 6)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    errors = {}
    for on in (False, True):
        q = quantize_static(model, CalibrationData({"x": x}), QuantizeConfig(bias_correction=on))
        out = ort.InferenceSession(q.model.SerializeToString()).run(None, {"x": x})[0]
        errors[on] = np.abs((out - ref).mean(axis=(0, 2, 3))).max()  # per-channel mean shift
    assert errors[True] < errors[False]
