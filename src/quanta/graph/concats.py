"""Concats whose inputs cannot share one int8 scale, and the int8 nodes that must then stay float.

A quantized Concat writes one grid for all its inputs (ONNX Runtime's QLinearConcat); when the
inputs' calibrated ranges differ by more than ``MAX_RANGE_RATIO``, that grid erases the narrow
ones, so the Concat is kept float, and so are the int8 nodes that read it
(``quanta.graph.float_readers``).
"""

from __future__ import annotations

import numpy as np
import onnx

from quanta.graph.ops import MAX_RANGE_RATIO
from quanta.graph.planner import StaticPlan
from quanta.graph.result import FloatKind, FloatReason
from quanta.quant import Observer

__all__ = ["mismatched_concats"]


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
