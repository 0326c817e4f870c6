"""TFLite export of the float arithmetic quanta leaves between int8 layers: a Mul and an Add of
a per-channel constant (input normalization, as Paddle2ONNX and PyTorch exports write it) and
HardSigmoid (no int8 kernel in ONNX Runtime, no TFLite operator). LiteRT must compute what the
ONNX graph computes as written (``onnx.reference``), within the output's int8 steps.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from test_tflite_export import _float_model, _run_tflite

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.tflite import onnx_to_tflite

pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed")

CONFIG = QuantizeConfig(
    min_fidelity=None, method="minmax", activation_type="int8", latency_check=False
)


def _litert_and_reference(
    model: onnx.ModelProto, x: np.ndarray, *, output_range: bool
) -> tuple[dict[str, int], np.ndarray, np.ndarray, float]:
    """Export ``model`` (with the output's range on ``x[:64]`` when ``output_range``), and run
    it in LiteRT and in ``onnx.reference`` on ``x[64:]``: (TFLite operator counts, LiteRT's
    output, the reference output, one step of the output's int8 grid or 0)."""
    from quanta.runtime.litert import tflite_kernels

    reference = ReferenceEvaluator(model)
    ranges, step = {}, 0.0
    if output_range:
        ref = reference.run(None, {"x": x[:64]})[0]
        ranges = {"y": (float(ref.min()), float(ref.max()))}
        step = (float(ref.max()) - float(ref.min())) / 255
    data = onnx_to_tflite(model, ranges)
    path = Path(tempfile.mkdtemp()) / "m.tflite"
    path.write_bytes(data)
    ops = dict(tflite_kernels(path).all)
    return ops, _run_tflite(data, x[64:]), reference.run(None, {"x": x[64:]})[0], step


def _model() -> onnx.ModelProto:
    """x (N, 3, 8, 8) -> Mul(scale) -> Add(shift) -> Identity -> Conv 3x3 (6) -> HardSigmoid
    -> Conv 1x1 (4) -> GlobalAveragePool -> Flatten -> y (N, 4)."""
    rng = np.random.default_rng(4)
    inits = {
        "scale": rng.uniform(0.5, 2.0, (1, 3, 1, 1)),
        "shift": rng.normal(0.0, 0.5, (1, 3, 1, 1)),
        "w1": rng.normal(0.0, 0.3, (6, 3, 3, 3)),
        "b1": rng.normal(0.0, 0.1, 6),
        "w2": rng.normal(0.0, 0.3, (4, 6, 1, 1)),
        "b2": rng.normal(0.0, 0.1, 4),
    }
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["m"], name="norm_mul"),
        helper.make_node("Add", ["m", "shift"], ["a"], name="norm_add"),
        helper.make_node("Identity", ["a"], ["a_id"], name="same"),
        helper.make_node("Conv", ["a_id", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("HardSigmoid", ["c1"], ["h"], name="hsig", alpha=0.25, beta=0.4),
        helper.make_node("Conv", ["h", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["y"], name="flat"),
    ]  # fmt: skip
    return _float_model(nodes, inits, ["N", 3, 8, 8], ["N", 4])


def test_float_mul_add_and_hard_sigmoid_match_the_onnx_graph() -> None:
    x = np.random.default_rng(5).normal(0, 1, (96, 3, 8, 8)).astype(np.float32)
    model = quantize_static(_model(), CalibrationData({"x": x[:64]}), CONFIG).model
    written = {n.name: n.op_type for n in model.graph.node}
    # ONNX keeps them float: a constant operand, and no int8 HardSigmoid kernel
    assert {"norm_mul", "norm_add", "same", "hsig"} <= set(written)
    ops, got, want, step = _litert_and_reference(model, x, output_range=True)
    # Mul, Add of constants; HardSigmoid as MUL, ADD (RELU6 fused), MUL
    assert ops["MUL"] == 3 and ops["ADD"] == 2 and ops["CONV_2D"] == 2
    assert np.abs(got - want).max() <= step  # measured: 0 steps apart


def test_hard_swish_rewritten_onto_int8_add_and_mul_exports_its_constant() -> None:
    # with uint8 activations quanta writes HardSwish as x * clip(x + 3, 0, 6) / 6 on int8 Add
    # and Mul, the 3 a DequantizeLinear of a uint8 constant: TFLite gets it as an int8 constant
    rng = np.random.default_rng(6)
    inits = {
        "w1": rng.normal(0.0, 0.5, (6, 3, 3, 3)),
        "b1": rng.normal(0.0, 0.5, 6),
        "w2": rng.normal(0.0, 0.3, (4, 6, 1, 1)),
        "b2": rng.normal(0.0, 0.1, 4),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c1"], ["h"], name="hswish"),
        helper.make_node("Conv", ["h", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["y"], name="flat"),
    ]  # fmt: skip
    x = rng.normal(0, 1, (96, 3, 8, 8)).astype(np.float32)
    config = QuantizeConfig(
        min_fidelity=None, method="minmax", activation_type="uint8", latency_check=False
    )
    float_model = _float_model(nodes, inits, ["N", 3, 8, 8], ["N", 4])
    model = quantize_static(float_model, CalibrationData({"x": x[:64]}), config).model
    assert "HardSwish" not in {n.op_type for n in model.graph.node}  # rewritten
    ops, got, want, step = _litert_and_reference(model, x, output_range=True)
    # x + 3, the gate read back on 1/6 of its scale (MUL by 1), x * gate
    assert ops["ADD"] == 1 and ops["MUL"] == 2 and ops["CONV_2D"] == 2
    assert np.abs(got - want).max() <= step  # measured: 0 steps apart


def test_shape_arithmetic_float_head_and_float_output() -> None:
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape (a batch-flexible flatten, as PyTorch
    # and Paddle2ONNX export it) becomes constants for batch 1; a MatMul head kept float is a
    # float FULLY_CONNECTED; the Softmax quanta keeps float is SOFTMAX, the float output itself
    from quanta.graph.result import FloatKind, FloatReason

    rng = np.random.default_rng(7)
    inits = {
        "w1": rng.normal(0.0, 0.5, (6, 3, 3, 3)),
        "b1": rng.normal(0.0, 0.5, 6),
        "wf": rng.normal(0.0, 0.5, (6, 4)),
        "zero": np.array(0, np.int64),
        "minus_one": np.array([-1], np.int64),
        "axes": np.array([0], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Shape", ["p"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="batch"),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="batch1"),
        helper.make_node("Concat", ["n1", "minus_one"], ["to"], name="to", axis=0),
        helper.make_node("Reshape", ["p", "to"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "wf"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "shape_head",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
        [
            onnx.numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
            for k, v in inits.items()
        ],
    )  # fmt: skip
    float_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    float_model.ir_version = 10
    x = rng.normal(0, 1, (72, 3, 8, 8)).astype(np.float32)
    keep = {"fc": FloatReason("test: kept float for speed", FloatKind.SPEED)}
    result = quantize_static(float_model, CalibrationData({"x": x[:64]}), CONFIG, keep_float=keep)
    model = result.model
    assert {"shape", "fc", "softmax"} <= {n.name for n in model.graph.node}
    ops, got, want, _ = _litert_and_reference(model, x, output_range=False)
    assert ops["FULLY_CONNECTED"] == 1 and ops["SOFTMAX"] == 1 and "SHAPE" not in ops
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_int8_head_whose_float_logits_feed_a_float_bias_add() -> None:
    # tf2onnx writes MatMul -> Add(bias) -> Softmax (opennsfw): quanta's int8 MatMul writes float
    # logits that only float layers read, which TFLite cannot hold in int8 without a range; it
    # is written as the ONNX graph computes it: float, on its dequantized input and weight
    rng = np.random.default_rng(8)
    inits = {
        "w1": rng.normal(0.0, 0.5, (6, 3, 3, 3)),
        "wf": rng.normal(0.0, 0.5, (6, 4)),
        "bf": rng.normal(0.0, 0.5, 4),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "wf"], ["logits"], name="fc"),
        helper.make_node("Add", ["logits", "bf"], ["biased"], name="bias"),
        helper.make_node("Softmax", ["biased"], ["y"], name="softmax", axis=-1),
    ]
    x = rng.normal(0, 1, (72, 3, 8, 8)).astype(np.float32)
    float_model = _float_model(nodes, inits, ["N", 3, 8, 8], ["N", 4])
    model = quantize_static(float_model, CalibrationData({"x": x[:64]}), CONFIG).model
    dq_weights = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    fc = next(n for n in model.graph.node if n.name == "fc")
    assert fc.input[1] in dq_weights  # an int8 MatMul in ONNX
    ops, got, want, _ = _litert_and_reference(model, x, output_range=False)
    assert ops["FULLY_CONNECTED"] == 1 and ops["ADD"] == 1 and ops["SOFTMAX"] == 1
    np.testing.assert_allclose(got, want, atol=1e-5)
