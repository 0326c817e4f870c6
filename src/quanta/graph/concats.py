"""Concats whose inputs cannot share one int8 scale, and the int8 nodes that must then stay float.

A quantized Concat writes one grid for all its inputs (ONNX Runtime's QLinearConcat); when the
inputs' calibrated ranges differ by more than ``MAX_RANGE_RATIO``, that grid erases the narrow
ones, so the Concat is kept float, and so are the int8 nodes that read it (see ``readers_of``).
"""

from __future__ import annotations

import numpy as np
import onnx

from quanta.graph.ops import MAX_RANGE_RATIO
from quanta.graph.planner import StaticPlan
from quanta.graph.result import FloatKind, FloatReason
from quanta.quant import Observer

__all__ = ["mismatched_concats", "readers_of"]


def mismatched_concats(
    model: onnx.ModelProto, plan: StaticPlan, ranges: dict[str, Observer]
) -> dict[str, str]:
    """Concat nodes whose inputs' ranges differ too much to share one output scale."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type != "Concat" or node.name not in plan.plans:
            continue
        widths = []
        for name in node.input:
            lo, hi = ranges[plan.source[name]].range()
            widths.append(float(np.max(hi) - np.min(lo)))
        narrow, wide = min(widths), max(widths)
        if narrow <= 0 or wide / narrow > MAX_RANGE_RATIO:
            out[node.name] = FloatReason(
                f"kept float: its inputs' ranges differ {wide / max(narrow, 1e-30):.0f}x (limit "
                f"{MAX_RANGE_RATIO:.0f}x), one int8 scale would erase the narrow ones",
                FloatKind.RANGES,
            )
    return out


def readers_of(model: onnx.ModelProto, plan: StaticPlan, concats: dict[str, str]) -> dict[str, str]:
    """The int8 nodes that read a kept-float Concat's output: they must stay float too, or the
    QuantizeLinear they put on it recreates the single shared scale (ONNX Runtime would even fuse
    the Concat back into QLinearConcat)."""
    outputs = {
        o: name
        for n in model.graph.node
        if n.name in concats
        for o, name in [(n.output[0], n.name)]
    }
    readers: dict[str, str] = {}
    for node in model.graph.node:
        op_plan = plan.plans.get(node.name)
        if op_plan is None or node.name in concats:
            continue
        read = [node.input[i] for i in op_plan.activations]
        if op_plan.output == "shared":
            read.append(node.input[0])
        for name in read:
            if name in outputs:
                readers[node.name] = FloatReason(
                    f"kept float: it reads {outputs[name]!r}, a Concat kept float",
                    FloatKind.RANGES,
                )
    return readers
