"""plan_static pruning: quantization that no int8 node reads is dropped (structural tests)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tiny_graphs import make_model

from quanta.graph import CalibrationData, QuantizeConfig, prepare, quantize_static
from quanta.graph.planner import UNREAD, plan_static
from quanta.runtime import make_session

# Fixed choices: no "auto" search and no fallback, so only the planner decides.
PLAIN = QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=None)


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.5, shape).astype(np.float32)


def two_gemms() -> onnx.ModelProto:
    """x (N, 8) -> Gemm fc1 -> h (N, 6) -> Gemm fc2 -> y (N, 4)."""
    return make_model(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
            helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="fc2", transB=1),
        ],
        {"x": ["N", 8]},
        {"y": ["N", 4]},
        {"w1": rand(6, 8), "b1": rand(6, seed=1), "w2": rand(4, 6, seed=2), "b2": rand(4, seed=3)},
    )


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def quantized_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors read by a QuantizeLinear (the producer's ``*_pre`` or a graph input)."""
    return {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}


# --- Gemm/MatMul: float32 output when nothing int8 reads it ----------------------------------


def test_gemm_writing_the_graph_output_stays_float32() -> None:
    plan = plan_static(prepare(two_gemms()))
    assert set(plan.plans) == {"fc1", "fc2"}
    # fc1's output is read by the int8 fc2: int8. fc2's output is the logits: float32.
    assert plan.source == {"x": "x", "h": "h"}
    assert "y" not in plan.source
    assert plan.float_nodes == []


def test_gemm_float_output_in_the_quantized_graph() -> None:
    x = rand(16, 8, seed=4)
    q = quantize_static(two_gemms(), CalibrationData({"x": x}), PLAIN).model
    # The Gemm writes the graph output itself: no QuantizeLinear/DequantizeLinear after it.
    assert producer(q, "y").op_type == "Gemm"
    # h keeps its QDQ pair: fc1 writes h_pre, a DequantizeLinear writes h.
    assert producer(q, "h").op_type == "DequantizeLinear"
    quantized = quantized_tensors(q)
    assert "x" in quantized
    assert any(t.startswith("h_pre") for t in quantized)
    assert not any(t.startswith("y") for t in quantized)


def test_prune_false_keeps_the_output_quantization() -> None:
    plan = plan_static(prepare(two_gemms()), prune=False)
    assert plan.source == {"x": "x", "h": "h", "y": "y"}


def test_float_outputs_argument_is_honoured_without_pruning() -> None:
    plan = plan_static(prepare(two_gemms()), float_outputs={"y"}, prune=False)
    assert plan.source == {"x": "x", "h": "h"}


# --- Add/Mul/...: kept float altogether when nothing int8 reads them --------------------------


def residual_before(op: str) -> onnx.ModelProto:
    """x (N, 8) -> MatMul proj -> h; Add(h, x) -> s -> LayerNormalization | Tanh | Sigmoid -> y."""
    inits = {"w": rand(8, 8)}
    if op == "LayerNormalization":
        inits.update(gamma=np.ones(8), beta=np.zeros(8))
        last = helper.make_node(op, ["s", "gamma", "beta"], ["y"], name="norm", axis=-1)
    else:
        last = helper.make_node(op, ["s"], ["y"], name="norm")
    return make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
            helper.make_node("Add", ["h", "x"], ["s"], name="residual"),
            last,
        ],
        {"x": ["N", 8]},
        {"y": ["N", 8]},
        inits,
    )


def test_residual_add_before_a_float_op_is_unread() -> None:
    for op in ("LayerNormalization", "Tanh", "Sigmoid"):
        plan = plan_static(prepare(residual_before(op)))
        reasons = {f.name: f.reason for f in plan.float_nodes}
        assert reasons["residual"] == UNREAD, op
        assert "no int8 consumer" in reasons["residual"]
        assert set(plan.plans) == {"proj"}, op
        # Only the MatMul's input is quantized: not h (the MatMul then writes float32, as the
        # pruning iterates), not the sum s.
        assert plan.source == {"x": "x"}, op


def test_residual_add_in_the_quantized_graph() -> None:
    x = rand(16, 8, seed=5)
    q = quantize_static(residual_before("Tanh"), CalibrationData({"x": x}), PLAIN)
    assert [f.name for f in q.float_nodes if f.reason == UNREAD] == ["residual"]
    assert producer(q.model, "h").op_type == "MatMul"
    assert producer(q.model, "s").op_type == "Add"
    assert quantized_tensors(q.model) == {"x"}


def add_before_conv() -> onnx.ModelProto:
    """Add(a, b) of two (N, 2, 5, 5) inputs -> Conv 3x3 -> y."""
    return make_model(
        [
            helper.make_node("Add", ["a", "b"], ["s"], name="add"),
            helper.make_node("Conv", ["s", "w"], ["y"], name="conv", kernel_shape=[3, 3]),
        ],
        {"a": ["N", 2, 5, 5], "b": ["N", 2, 5, 5]},
        {"y": ["N", 3, 3, 3]},
        {"w": rand(3, 2, 3, 3)},
    )


def test_add_feeding_a_conv_is_planned() -> None:
    plan = plan_static(prepare(add_before_conv()))
    assert set(plan.plans) == {"add", "conv"}
    assert plan.float_nodes == []
    # Both operands and the sum (the Conv's input) are int8; the Conv output is its own range.
    assert {"a", "b", "s"} <= set(plan.source)


def test_exclude_reason_wins_over_unread() -> None:
    plan = plan_static(prepare(residual_before("Tanh")), exclude={"residual": "on request"})
    assert {f.name: f.reason for f in plan.float_nodes}["residual"] == "on request"


def test_exclude_collection_gives_the_default_reason() -> None:
    plan = plan_static(prepare(add_before_conv()), exclude=["add"])
    assert [(f.name, f.reason) for f in plan.float_nodes] == [("add", "kept float on request")]
    assert set(plan.plans) == {"conv"}


# --- a fused activation on an unread output ----------------------------------------------------


def matmul_relu() -> onnx.ModelProto:
    """x (N, 8) -> MatMul -> m -> Relu -> y (graph output)."""
    return make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
            helper.make_node("Relu", ["m"], ["y"], name="act"),
        ],
        {"x": ["N", 8]},
        {"y": ["N", 4]},
        {"w": rand(8, 4)},
    )


def test_matmul_relu_with_unread_output_keeps_the_relu_float() -> None:
    plan = plan_static(prepare(matmul_relu()))
    assert set(plan.plans) == {"mm"}
    # The MatMul writes float32 (no int8 consumer), so the Relu is not absorbed.
    assert plan.fused == {}
    assert plan.source == {"x": "x"}


def test_matmul_relu_is_fused_without_pruning() -> None:
    plan = plan_static(prepare(matmul_relu()), prune=False)
    assert plan.fused == {"mm": "act"}
    assert plan.source == {"x": "x", "y": "y"}


def test_matmul_relu_in_the_quantized_graph() -> None:
    x = rand(16, 8, seed=6)
    q = quantize_static(matmul_relu(), CalibrationData({"x": x}), PLAIN).model
    relu = producer(q, "y")
    assert relu.op_type == "Relu"
    assert producer(q, relu.input[0]).op_type == "MatMul"
    assert quantized_tensors(q) == {"x"}


def test_add_read_by_a_pool_that_feeds_int8_stays_int8() -> None:
    """A ResNet tail: residual Add -> GlobalAveragePool -> Flatten -> Gemm. The pool runs in
    int8 only on an int8 input, so the Add's output *is* read in int8."""
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Add", ["x", "c"], ["s"], name="residual"),
            helper.make_node("GlobalAveragePool", ["s"], ["p"], name="gap"),
            helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
            helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
        ],
        {"x": ["N", 4, 6, 6]},
        {"y": ["N", 3]},
        {
            "w": rand(4, 4, 3, 3),
            "b": rand(4, seed=1),
            "wf": rand(3, 4, seed=2),
            "bf": rand(3, seed=3),
        },  # fmt: skip
    )
    plan = plan_static(prepare(model))
    assert {"residual", "gap"} <= set(plan.plans)
    assert not any(f.name == "residual" for f in plan.float_nodes)


# --- a mover between the logits and the graph output -------------------------------------------


def logits_then(mover: str) -> onnx.ModelProto:
    """A CTC reader's head: x (6, 8) -> Gemm fc -> l (6, 5) -> Reshape | Transpose -> y."""
    inits = {"w": rand(5, 8), "b": rand(5, seed=1)}
    if mover == "Reshape":
        inits["shape"] = np.array([6, 1, 5], np.int64)
        last = helper.make_node("Reshape", ["l", "shape"], ["y"], name="move")
        out = [6, 1, 5]
    else:
        last = helper.make_node("Transpose", ["l"], ["y"], name="move", perm=[1, 0])
        out = [5, 6]
    return make_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["l"], name="fc", transB=1), last],
        {"x": [6, 8]},
        {"y": out},
        inits,
    )


def test_mover_before_the_graph_output_is_unread_so_the_logits_stay_float32() -> None:
    """Rounding the logits to 8 bits flips the arg-max wherever two classes are closer than a
    step (ddddocr's 8210-class reader lost 2.9 % of its positions so)."""
    for mover in ("Reshape", "Transpose"):
        plan = plan_static(prepare(logits_then(mover)))
        assert {f.name: f.reason for f in plan.float_nodes} == {"move": UNREAD}, mover
        assert set(plan.plans) == {"fc"}, mover
        assert plan.source == {"x": "x"}, mover  # fc writes float32


def test_logits_behind_a_mover_are_not_requantized() -> None:
    x = rand(6, 8, seed=7)
    q = quantize_static(logits_then("Reshape"), CalibrationData({"x": x}), PLAIN).model
    assert producer(q, "y").op_type == "Reshape"
    assert producer(q, producer(q, "y").input[0]).op_type == "Gemm"
    assert quantized_tensors(q) == {"x"}
    # ONNX Runtime's integer Gemm against onnx.reference's float math on the dequantized
    # operands: the same float32 logits, with no 8-bit step (up to 0.2 here) in between.
    y = make_session(q.SerializeToString()).run(None, {"x": x})[0]
    y_ref = ReferenceEvaluator(q).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)


def test_mover_read_by_an_int8_op_stays_int8() -> None:
    model = make_model(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
            helper.make_node("Transpose", ["h"], ["t"], name="move", perm=[1, 0]),
            helper.make_node("Gemm", ["t", "w2", "b2"], ["y"], name="fc2", transB=1),
        ],
        {"x": [6, 8]},
        {"y": [5, 3]},
        {"w1": rand(5, 8), "b1": rand(5, seed=1), "w2": rand(3, 6, seed=2), "b2": rand(3)},
    )
    plan = plan_static(prepare(model))
    assert plan.float_nodes == []
    assert set(plan.plans) == {"fc1", "move", "fc2"}
    assert plan.source["t"] == plan.source["h"] == "h"
