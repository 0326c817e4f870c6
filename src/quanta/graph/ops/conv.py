"""Conv (grouped and depthwise too): int8 input, per-output-channel int8 weights, int32 bias."""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan, relu_follows


def plan_conv(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    if not index.is_float(node.input[0]):
        return "its input is not float32"
    if not index.is_constant(node.input[1]):
        return "its weight is not a constant initializer"
    has_bias = len(node.input) > 2 and bool(node.input[2])
    if has_bias and not index.is_constant(node.input[2]):
        return "its bias is not a constant initializer"
    return OpPlan(
        activations=(0,),
        weights=((1, 0),),  # weight (M, C/group, kH, kW): output channels on axis 0
        bias=2 if has_bias else None,
        fuse_relu=relu_follows(node, index),
    )
