"""Dynamic-range quantization: int8 weights; activation ranges measured at run time.

What runs in integer arithmetic is chosen by measurement, not by habit (``benchmarks/
dynamic_ops.py`` prints the figures on your CPU):

- Gemm and MatMul with a constant weight become ``DynamicQuantizeLinear -> MatMulInteger ->
  Cast -> Mul(scales) [-> Add(bias)]``, which ONNX Runtime fuses into one
  ``DynamicQuantizeMatMul`` kernel: int8 weights are 4x less memory to stream and the u8 x s8
  product is faster than float32 at every batch size we measured.
- Conv keeps float arithmetic and stores its weight as int8 ("weight-only"): ONNX Runtime's
  ``ConvInteger`` has no fast kernel on x86: ORT's dynamic LeNet ran 1.8x (batch 1) to 6.6x
  (batch 256) slower than float here (benchmarks/results/dynamic_ops.md), so dynamic
  int8 convolution would make the model smaller *and* slower. The int8 weight is decoded by
  ``Cast -> Mul(scale)``, which ONNX Runtime constant-folds when the session starts, so the Conv
  sees a float constant and keeps its fastest (NCHWc) kernels. A ``DequantizeLinear`` would do
  the same arithmetic, but ONNX Runtime keeps DequantizeLinear unfolded (for QDQ fusion), runs it
  on every inference and loses the NCHWc layout: measured 1.4x slower than float at batch 256.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.config import QuantizeConfig
from quanta.graph.index import GraphIndex
from quanta.graph.ops import get_attr
from quanta.graph.prepare import prepare
from quanta.graph.result import FloatNode, QuantizeResult
from quanta.graph.rewrite import Names, quantize_weight, remove_unused, weight_only_decoder
from quanta.graph.weight_only import compress_float_weights
from quanta.opfacts import FACTS, Backend, OpKind, weight_axis
from quanta.runtime.machine import int8_pairs_saturate

__all__ = ["quantize_dynamic"]


def quantize_dynamic(
    model: onnx.ModelProto, config: QuantizeConfig | None = None
) -> QuantizeResult:
    """Quantize weights to int8; Gemm/MatMul compute in int8, Conv stays float with int8 storage."""
    config = config or QuantizeConfig(mode="dynamic")
    model = prepare(model)
    index = GraphIndex(model)
    names = Names(model)
    graph = model.graph
    head: list[onnx.NodeProto] = []
    body: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    float_nodes: list[FloatNode] = []
    counts = {"matmul": 0, "weight_only": 0}
    # ORT's dynamic MatMul multiplies u8 activations by s8 weights: the same int16 pair sums
    reduced = config.weight_range == "reduced" or (
        config.weight_range == "auto" and int8_pairs_saturate()
    )
    for node in graph.node:
        facts = FACTS.get(node.op_type)
        if facts is None:
            body.append(node)
            continue
        if Backend.DYNAMIC in facts.backends:
            reason = _dynamic_matmul_refusal(node, index)
            if reason is None:
                body.extend(
                    _dynamic_matmul(node, index, names, new_inits, config.per_channel, reduced)
                )
                counts["matmul"] += 1
                continue
            float_nodes.append(FloatNode(node.name, node.op_type, reason))
        elif facts.kind is OpKind.COMPUTE and index.is_constant(node.input[1]):
            # no fast int8 kernel with run-time ranges (ConvInteger): float, int8-stored weight
            w = index.constant(node.input[1])
            q, qp = quantize_weight(w, weight_axis(node) if config.per_channel else None)
            decode, inits = weight_only_decoder(q, qp, node.input[1], names)
            new_inits.extend(inits)
            head.extend(decode)
            node.input[1] = decode[-1].output[0]
            counts["weight_only"] += 1
        elif facts.kind is OpKind.COMPUTE:
            float_nodes.append(FloatNode(node.name, node.op_type, "its weight is not a constant"))
        body.append(node)
    del graph.node[:]
    graph.node.extend(head + body)
    graph.initializer.extend(new_inits)
    del graph.value_info[:]
    remove_unused(model)
    compressed = compress_float_weights(model, per_channel=config.per_channel)
    onnx.checker.check_model(model)
    notes = [
        f"{counts['matmul']} Gemm/MatMul run as int8 DynamicQuantizeMatMul",
        f"{counts['weight_only']} Conv keep float arithmetic with int8 weights "
        "(ConvInteger is slower than float Conv on x86)",
    ]
    if compressed:
        notes.append(
            f"{compressed} more weight tensors (embedding tables, float MatMul/Gemm weights) "
            "stored "
            "as int8, decoded to float when the session starts"
        )
    return QuantizeResult(model, float_nodes, notes)


def _dynamic_matmul_refusal(node: onnx.NodeProto, index: GraphIndex) -> str | None:
    """Why this Gemm/MatMul cannot become DynamicQuantizeMatMul, or None if it can."""
    if not index.is_constant(node.input[1]):
        return (
            "both operands are activations (as in attention); dynamic int8 quantizes constant "
            "weights only"
        )
    rank = index.constant(node.input[1]).ndim
    if rank != 2:
        return f"its constant weight has rank {rank}; int8 MatMulInteger weights need rank 2"
    if node.op_type == "Gemm":
        if get_attr(node, "transA", 0):
            return "it transposes its input (transA=1)"
        if get_attr(node, "alpha", 1.0) != 1.0 or get_attr(node, "beta", 1.0) != 1.0:
            return "it scales its product or bias (alpha or beta != 1)"
        if len(node.input) > 2 and node.input[2]:
            c = node.input[2]
            if not index.is_constant(c) or index.constant(c).ndim != 1:
                return "its bias C is not a constant 1-D vector"
    return None


def _dynamic_matmul(
    node: onnx.NodeProto,
    index: GraphIndex,
    names: Names,
    new_inits: list[onnx.TensorProto],
    per_channel: bool,
    reduced: bool = False,
) -> list[onnx.NodeProto]:
    """``Y = cast(MatMulInteger(q(A), Wq)) * (s_A * s_W) + bias``: the pattern ORT fuses."""
    w = index.constant(node.input[1]).astype(np.float32)
    if node.op_type == "Gemm" and get_attr(node, "transB", 0):
        w = w.T  # (N, K) -> (K, N): MatMulInteger takes B as (K, N)
    q, qp = quantize_weight(np.ascontiguousarray(w), 1 if per_channel else None, reduced=reduced)
    base = node.input[1]
    w_name = names.fresh(f"{base}_q")
    w_scale = names.fresh(f"{base}_s")
    w_zp = names.fresh(f"{base}_zp")
    new_inits += [
        numpy_helper.from_array(q, w_name),
        numpy_helper.from_array(qp.scale, w_scale),
        numpy_helper.from_array(qp.zero_point.astype(np.int8), w_zp),
    ]
    out = node.output[0]
    a_q, a_scale, a_zp = (names.fresh(f"{out}_{s}") for s in ("x_q", "x_s", "x_zp"))
    acc, acc_f, scale, prod = (
        names.fresh(f"{out}_{s}") for s in ("int32", "float", "scale", "matmul")
    )
    nodes = [
        helper.make_node(
            "DynamicQuantizeLinear",
            [node.input[0]],
            [a_q, a_scale, a_zp],
            name=names.fresh(f"{node.name}_DynamicQuantizeLinear"),
        ),
        helper.make_node(
            "MatMulInteger",
            [a_q, w_name, a_zp, w_zp],
            [acc],
            name=names.fresh(f"{node.name}_MatMulInteger"),
        ),
        helper.make_node(
            "Cast", [acc], [acc_f], to=onnx.TensorProto.FLOAT, name=names.fresh(f"{node.name}_Cast")
        ),
        helper.make_node(
            "Mul", [a_scale, w_scale], [scale], name=names.fresh(f"{node.name}_ScaleMul")
        ),
    ]
    has_bias = node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2])
    nodes.append(
        helper.make_node(
            "Mul", [acc_f, scale], [prod if has_bias else out], name=names.fresh(f"{node.name}_Mul")
        )
    )
    if has_bias:
        nodes.append(
            helper.make_node(
                "Add", [prod, node.input[2]], [out], name=names.fresh(f"{node.name}_BiasAdd")
            )
        )
    return nodes
