"""Twin nodes: the same computation on the same weights, repeated (an unrolled recurrent cell).

A recurrent layer exported with its loop unrolled (PyTorch's LSTMCell in a Python loop:
captcha_crnn, 20 steps, two directions) repeats one cell per time step: every step's Gemm reads
the same weight initializer, and the Sigmoid, Tanh, Mul and Add after it do the same thing to
the same kind of value. Keeping one step float and not the next is never the question; the
accuracy-aware fallback (``quanta.graph.fallback``) asks it once per node, so such a model
costs one model build and run per node of every step. Twins are searched as one candidate.

The rule: a node's *signature* is its op type, its attributes, its constant inputs (a weight,
``WEIGHT_SIZE`` values or more, by name, since twins read the same tensor; a smaller constant
by dtype and shape only, since that is what differs between steps: the time index a Gather
reads) and, for every other input, the signature of the node that writes it, ``DEPTH``
producers deep. Nodes whose signatures are
equal and reach at least one weight are twins. Without weight sharing no two signatures that
reach a weight are equal, so on a model without repeated weights every group is one node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from quanta.graph.index import GraphIndex
from quanta.opfacts import FACTS

__all__ = ["DEPTH", "WEIGHT_SIZE", "Twins", "twin_groups", "weight_sharers"]

DEPTH = 4  # producers deep: from a cell's Sigmoid/Tanh/Mul back to the Gemm that feeds it
WEIGHT_SIZE = 16  # a constant with this many values or more is a weight, named by its tensor

_Signature = tuple[object, ...]


def twin_groups(model: onnx.ModelProto, candidates: Sequence[str]) -> list[list[str]]:
    """``candidates`` (node names) in groups of twins, in the order of each group's first
    member in ``candidates``; members keep that order too."""
    index = GraphIndex(model)
    by_name = {n.name: n for n in model.graph.node}
    memo: dict[tuple[str, int], tuple[_Signature, bool]] = {}
    groups: dict[_Signature, list[str]] = {}
    out: list[list[str]] = []
    for name in candidates:
        signature, has_weight = _signature(by_name[name], DEPTH, index, memo)
        if not has_weight:
            out.append([name])
            continue
        if signature not in groups:
            groups[signature] = []
            out.append(groups[signature])
        groups[signature].append(name)
    return out


def _signature(
    node: onnx.NodeProto,
    depth: int,
    index: GraphIndex,
    memo: dict[tuple[str, int], tuple[_Signature, bool]],
) -> tuple[_Signature, bool]:
    """``node``'s signature ``depth`` producers deep, and whether it reaches a weight."""
    key = (node.name, depth)
    if key in memo:
        return memo[key]
    attributes = tuple(sorted(a.SerializeToString() for a in node.attribute))
    inputs: list[object] = []
    has_weight = False
    for name in node.input:
        if not name:
            inputs.append("")
        elif index.is_constant(name):
            value = index.constant(name)
            if value.size >= WEIGHT_SIZE:
                inputs.append(("weight", name))
                has_weight = True
            else:
                inputs.append(("value", str(value.dtype), value.shape))
        elif name in index.producer and depth > 0:
            signature, weighted = _signature(index.producer[name], depth - 1, index, memo)
            inputs.append(signature)
            has_weight = has_weight or weighted
        else:
            inputs.append(("input",) if name in index.producer else ("graph input", name))
    memo[key] = ((node.op_type, node.domain, attributes, tuple(inputs)), has_weight)
    return memo[key]


class Twins:
    """Candidates searched in groups of twins: each group stands as its first member."""

    def __init__(self, model: onnx.ModelProto, candidates: Sequence[str]) -> None:
        self.groups = {group[0]: group for group in twin_groups(model, candidates)}
        self._twins = {m for group in self.groups.values() for m in group[1:]}

    @property
    def candidates(self) -> list[str]:
        """One name per group."""
        return list(self.groups)

    def planned(self, names: Sequence[str]) -> list[str]:
        """``names`` without the members that their group's first stands for."""
        return [n for n in names if n not in self._twins]

    def expand(self, chosen: Mapping[str, str]) -> dict[str, str]:
        """``chosen`` (first members, or other nodes) with every twin of each, same value."""
        return {m: v for n, v in chosen.items() for m in self.groups.get(n, [n])}

    def cost(self, cost: Mapping[str, float] | None) -> dict[str, float] | None:
        """A group's cost: its members' together."""
        if cost is None:
            return None
        return {n: sum(cost.get(m, 0.0) for m in g) for n, g in self.groups.items() if n in cost}


def weight_sharers(model: onnx.ModelProto, candidates: Sequence[str]) -> list[list[str]]:
    """The groups of two or more ``candidates`` that read one weight initializer (at its op's
    weight input): every step of an unrolled recurrent cell, including the first steps, which
    are not twins. One of them float and another int8 would store that weight twice."""
    inits = {t.name for t in model.graph.initializer}
    wanted = set(candidates)
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        facts = FACTS.get(node.op_type)
        if node.name not in wanted or facts is None or facts.weight is None:
            continue
        if facts.weight < len(node.input) and node.input[facts.weight] in inits:
            readers.setdefault(node.input[facts.weight], []).append(node.name)
    return [names for names in readers.values() if len(names) > 1]
