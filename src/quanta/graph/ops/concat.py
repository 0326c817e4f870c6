"""Concat: each input keeps its scale, QLinearConcat requantizes them onto the output's.

One output scale covers the union of the inputs' ranges, so an input whose range is much
narrower than the others (box coordinates beside class scores, a small feature map beside a
large one) would lose most of its resolution. After calibration the static pass checks the
ratio of the inputs' range widths and keeps such a Concat float (``MAX_RANGE_RATIO``).
"""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan
from quanta.graph.result import FloatKind, FloatReason

# NOTE: an input whose range is 16x narrower than the widest keeps only 4 of its 8 bits.
MAX_RANGE_RATIO = 16.0


def plan_concat(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    if any(index.is_constant(name) for name in node.input):
        # a constant beside activations would squeeze them onto its grid: float by design
        return FloatReason("one input is a constant", FloatKind.BY_DESIGN)
    if not all(index.is_float(name) for name in node.input):
        return "its inputs are not all float32"
    return OpPlan(activations=tuple(range(len(node.input))), output="own")
