"""The nodes a quantization left float, as a few grouped lines instead of one per node.

Nodes are grouped by their ``FloatKind``, op type and reason (with figures and quoted names
taken out, so "cost 0.0123" and "cost 0.0087" group together): one line per group, with the
count and one example. A group is a *note* when it needs no action: a choice quanta measured
(``FloatKind.measured``), an op float by design or on request, or an op that only moves values
(a float Concat or Transpose costs nothing to speak of); anything else is a *warning*.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from quanta.graph.result import FloatKind, FloatNode
from quanta.opfacts import OpKind, facts_of

__all__ = ["FloatGroup", "group_float_nodes"]

# Kinds that report a decision rather than a limitation.
_QUIET_KINDS = frozenset({FloatKind.BY_DESIGN, FloatKind.REQUESTED})
# Op kinds whose float version costs next to nothing (no arithmetic on values).
_FREE_OPS = frozenset({OpKind.MOVER, OpKind.SHAPE})
_FIGURES = re.compile(r"'[^']*'|-?\d+(?:\.\d+)?(?:e-?\d+)?")


@dataclass(frozen=True)
class FloatGroup:
    """Nodes that stay float for the same reason: ``nodes[0]`` is the example."""

    nodes: tuple[FloatNode, ...]
    warning: bool

    @property
    def count(self) -> int:
        return len(self.nodes)

    def line(self) -> str:
        """E.g. "40 Concat nodes stay float: one input is a constant (e.g. 'concat_3')"."""
        first = self.nodes[0]
        if self.count == 1:
            return str(first)
        if all(n.reason == first.reason for n in self.nodes):
            return (
                f"{self.count} {first.op_type} nodes stay float: {first.reason} "
                f"(e.g. {first.name!r})"
            )
        return f"{self.count} {first.op_type} nodes stay float, e.g. {first.name!r}: {first.reason}"


def _needs_action(node: FloatNode) -> bool:
    if node.kind.measured or node.kind in _QUIET_KINDS:
        return False
    facts = facts_of(node.op_type)
    return facts is None or facts.kind not in _FREE_OPS


def group_float_nodes(nodes: Sequence[FloatNode]) -> list[FloatGroup]:
    """One group per (kind, op type, reason less its figures), warnings first, then by size
    (largest first); within a group nodes keep the graph's order."""
    groups: dict[tuple[FloatKind, str, str], list[FloatNode]] = {}
    for node in nodes:
        key = (node.kind, node.op_type, _FIGURES.sub("#", node.reason))
        groups.setdefault(key, []).append(node)
    out = [FloatGroup(tuple(g), _needs_action(g[0])) for g in groups.values()]
    return sorted(out, key=lambda g: (not g.warning, -g.count))
