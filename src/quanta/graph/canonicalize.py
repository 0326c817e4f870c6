"""Rewrite equivalent op spellings into the form that has int8 kernels.

- ``ReduceMean`` over the two spatial axes of a 4-D tensor with ``keepdims=1`` (how exporters
  write ``adaptive_avg_pool2d(x, 1)``) is ``GlobalAveragePool``, which ONNX Runtime runs as
  QLinearGlobalAveragePool.
"""

from __future__ import annotations

import onnx
from onnx import helper

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import get_attr

__all__ = ["canonicalize"]


def _spatial_mean(node: onnx.NodeProto, index: GraphIndex, rank: int | None) -> bool:
    if node.op_type != "ReduceMean" or rank != 4 or get_attr(node, "keepdims", 1) != 1:
        return False
    axes = get_attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1] and index.is_constant(node.input[1]):
        axes = index.constant(node.input[1]).tolist()
    return axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def canonicalize(model: onnx.ModelProto) -> int:
    """Apply the rewrites in place (the model must have shape information); return the count."""
    index = GraphIndex(model)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]
        if v.type.tensor_type.HasField("shape")
    }
    count = 0
    for i, node in enumerate(model.graph.node):
        if node.op_type == "ReduceMean" and _spatial_mean(node, index, ranks.get(node.input[0])):
            pool = helper.make_node(
                "GlobalAveragePool", [node.input[0]], [node.output[0]], name=node.name
            )
            model.graph.node[i].CopyFrom(pool)
            count += 1
    return count
