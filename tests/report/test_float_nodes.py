"""Float nodes as grouped lines: one per (kind, op type, reason less its figures)."""

from __future__ import annotations

from quanta.graph.result import FloatKind, FloatNode, FloatReason
from quanta.report.float_nodes import group_float_nodes

NO_HANDLER = FloatKind.NO_HANDLER


def accuracy(cost: float) -> FloatReason:
    return FloatReason(f"kept float: quantizing it alone cost {cost:.4f}", FloatKind.ACCURACY)


def test_nodes_group_by_kind_op_and_reason_with_a_count_and_an_example() -> None:
    nodes = [
        FloatNode("concat_0", "Concat", "one input is a constant"),
        FloatNode("abs_0", "Abs", FloatReason("quanta has no int8 handler for Abs", NO_HANDLER)),
        FloatNode("concat_1", "Concat", "one input is a constant"),
        FloatNode("fc1", "Gemm", accuracy(0.0123)),
        FloatNode("fc2", "Gemm", accuracy(0.0087)),
        FloatNode("concat_2", "Concat", "one input is a constant"),
        FloatNode("conv", "Conv", "its weight is not a constant initializer"),
    ]  # fmt: skip
    groups = group_float_nodes(nodes)
    lines = [(g.warning, g.line()) for g in groups]
    assert lines == [
        # warnings first: an op quanta could not quantize
        (True, "node 'abs_0' (Abs) stays float: quanta has no int8 handler for Abs"),
        (True, "node 'conv' (Conv) stays float: its weight is not a constant initializer"),
        # a float Concat only moves values: nothing to act on
        (False, "3 Concat nodes stay float: one input is a constant (e.g. 'concat_0')"),
        # measured choices group although their figures differ; the example keeps its own
        (False, "2 Gemm nodes stay float, e.g. 'fc1': kept float: quantizing it alone cost 0.0123"),
    ]
    assert [n.name for n in groups[2].nodes] == ["concat_0", "concat_1", "concat_2"]


def test_by_design_and_requested_are_notes() -> None:
    nodes = [
        FloatNode("s", "Sigmoid", FloatReason("kept float: no measured gain", FloatKind.BY_DESIGN)),
        FloatNode("c", "Conv", FloatReason("kept float on request", FloatKind.REQUESTED)),
    ]
    assert [g.warning for g in group_float_nodes(nodes)] == [False, False]
