"""Gemm (fully connected): int8 A, per-output-channel int8 B, int32 C."""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan, get_attr, relu_follows
from quanta.opfacts import weight_axis


def plan_gemm(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    if not index.is_float(node.input[0]):
        return "its input is not float32"
    if not index.is_constant(node.input[1]):
        return "its weight B is not a constant initializer"
    # Y = alpha * A' @ B' + beta * C; B is (K, N), or (N, K) with transB: the axis of N.
    axis = weight_axis(node)
    assert axis is not None  # Gemm's facts name it
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = node.input[2]
        scaled = get_attr(node, "alpha", 1.0) != 1.0 or get_attr(node, "beta", 1.0) != 1.0
        if not index.is_constant(c):
            return "its bias C is not a constant initializer"
        if scaled or index.constant(c).ndim != 1:
            return "its bias C is scaled (alpha/beta != 1) or not a 1-D vector"
        bias = 2
    return OpPlan(
        activations=(0,), weights=((1, axis),), bias=bias, fuse_relu=relu_follows(node, index)
    )
