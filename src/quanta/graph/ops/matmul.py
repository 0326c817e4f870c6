"""MatMul: int8 x int8. A constant right-hand side is a weight, per column (its last axis)."""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan, relu_follows


def plan_matmul(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    a, b = node.input[0], node.input[1]
    if not index.is_float(a):
        return "its input is not float32"
    if index.is_constant(b):
        rank = index.constant(b).ndim
        if rank != 2:
            return f"its constant right-hand side has rank {rank}; int8 weights need rank 2"
        return OpPlan(activations=(0,), weights=((1, 1),), fuse_relu=relu_follows(node, index))
    if not index.is_float(b):
        return "its right-hand side is not float32"
    return OpPlan(activations=(0, 1), fuse_relu=relu_follows(node, index))
