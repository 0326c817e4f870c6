"""Ops that only move or select values: they run on int8 with their input's scale and zero point.

Sharing the scale is what lets ONNX Runtime drop the DequantizeLinear/QuantizeLinear pair around
them (MaxPool on int8, a Reshape that never leaves int8).
"""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan


def plan_passthrough(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    if not index.is_float(node.input[0]):
        return "its input is not float32"
    if index.is_constant(node.input[0]):
        return "its data is a constant (e.g. an embedding table), not an activation"
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return "it also returns argmax indices"
    return OpPlan(output="shared", requires_quantized_input=True)
