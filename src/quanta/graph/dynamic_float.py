"""Dynamic int8 Gemm/MatMul back to float MatMul of their int8-stored weights.

``quanta.graph.dynamic`` writes a dynamic int8 MatMul as ``DynamicQuantizeLinear -> MatMulInteger
-> Cast -> Mul(s_x * s_w)``: the input's range is measured on every run. LiteRT's hybrid kernels
(its dynamic-range form: int8 weights, float activations) do the same inside one
FULLY_CONNECTED, so the TFLite export reads such a chain as the float MatMul of the decoded
weight and lets its dynamic-range writer store that weight int8 again.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.ops import get_attr
from quanta.graph.rewrite import Names, remove_unused

__all__ = ["float_matmuls"]


def float_matmuls(model: onnx.ModelProto) -> int:
    """Rewrite (in place) every ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul`` chain
    with a constant int8 weight as ``MatMul(x, (W_q - z_w) * s_w)``; how many were rewritten.
    A chain of another form is left as it is."""
    index, names = GraphIndex(model), Names(model)
    # by first output (an SSA graph's node key): the chain's last Mul -> its float MatMul
    replaced: dict[str, onnx.NodeProto] = {}
    dropped: set[str] = set()
    inits: list[onnx.TensorProto] = []
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            continue
        chain = _chain(node, index)
        if chain is None:
            continue
        quantize, cast, scale_mul, product = chain
        w = index.constant(node.input[1]).astype(np.float32)
        zero = index.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else 0
        w_scale = index.constant(_other(scale_mul, quantize.output[1]))
        weight = names.fresh(f"{node.input[1]}_float")
        inits.append(numpy_helper.from_array((w - zero) * w_scale, weight))
        replaced[product.output[0]] = helper.make_node(
            "MatMul", [quantize.input[0], weight], list(product.output), name=product.name
        )
        dropped.update(n.output[0] for n in (node, cast, scale_mul))
    if not replaced:
        return 0
    nodes = [replaced.get(n.output[0], n) for n in model.graph.node if n.output[0] not in dropped]
    read = {name for n in nodes for name in n.input}
    # a DynamicQuantizeLinear whose integers no node reads any more goes too
    nodes = [n for n in nodes if n.op_type != "DynamicQuantizeLinear" or n.output[0] in read]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    remove_unused(model)
    return len(replaced)


def _chain(
    matmul: onnx.NodeProto, index: GraphIndex
) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto, onnx.NodeProto] | None:
    """The DynamicQuantizeLinear, Cast, scale Mul and product Mul around ``matmul``, or None."""
    quantize = index.producer.get(matmul.input[0])
    if quantize is None or quantize.op_type != "DynamicQuantizeLinear":
        return None
    if len(matmul.input) < 3 or matmul.input[2] != quantize.output[2]:
        return None
    if not index.is_constant(matmul.input[1]) or index.constant(matmul.input[1]).ndim != 2:
        return None
    if len(matmul.input) > 3 and matmul.input[3] and not index.is_constant(matmul.input[3]):
        return None
    cast = index.sole_consumer(matmul.output[0])
    if cast is None or cast.op_type != "Cast" or get_attr(cast, "to") != onnx.TensorProto.FLOAT:
        return None
    product = index.sole_consumer(cast.output[0])
    if product is None or product.op_type != "Mul":
        return None
    scale_mul = index.producer.get(_other(product, cast.output[0]))
    if scale_mul is None or scale_mul.op_type != "Mul" or quantize.output[1] not in scale_mul.input:
        return None
    if not index.is_constant(_other(scale_mul, quantize.output[1])):
        return None
    if len(index.consumers.get(scale_mul.output[0], [])) != 1:
        return None
    return quantize, cast, scale_mul, product


def _other(node: onnx.NodeProto, one: str) -> str:
    """The input of a two-input ``node`` that is not ``one``."""
    a, b = node.input[0], node.input[1]
    return b if a == one else a
