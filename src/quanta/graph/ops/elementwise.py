"""Add and Mul of two activations (residual connections, gating): QLinearAdd / QLinearMul.

Both inputs keep their own scale; the output gets its calibrated range. A constant operand
(a bias added after a MatMul, a scale) stays float: the op is then a cheap float op between int8
neighbours, and quantizing a constant per tensor would only add error.
"""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan, relu_follows
from quanta.graph.result import FloatKind, FloatReason


def plan_binary(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    a, b = node.input[0], node.input[1]
    if index.is_constant(a) or index.is_constant(b):
        # by design, not a failure: a note, not a warning
        return FloatReason(
            "one operand is a constant (kept float, fused with its float neighbour)",
            FloatKind.BY_DESIGN,
        )
    if not (index.is_float(a) and index.is_float(b)):
        return "its inputs are not float32"
    return OpPlan(activations=(0, 1), fuse_relu=relu_follows(node, index))
