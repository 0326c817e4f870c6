"""Which profiled names are a node's: ONNX Runtime's profiler names fused and duplicated kernels
after the nodes it made them from, and an int8 node's time includes the QuantizeLinear and
DequantizeLinear nodes its quantization put in the graph. ``quanta.graph.latency`` compares
float and int8 per node with these."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import onnx

__all__ = ["attribute", "fused_outputs", "int8_aliases", "median_by_node"]

_QDQ = ("QuantizeLinear", "DequantizeLinear")
# What ONNX Runtime appends to a node's name when it fuses or duplicates it.
_ORT_SUFFIX = re.compile(r"/(\w*Fusion|duplicated)$")


def fused_outputs(model: onnx.ModelProto) -> dict[str, set[str]]:
    """Per node: the names ONNX Runtime may profile it under in the float model (its name, its
    outputs, and those of a Relu/Clip it fuses)."""
    readers = _readers(model)
    names: dict[str, set[str]] = {}
    for node in model.graph.node:
        aliases = {node.name, *node.output}
        for out in node.output:
            users = readers.get(out, [])
            if len(users) == 1 and users[0].op_type in ("Relu", "Clip"):
                aliases.update(users[0].output)
        names[node.name] = aliases
    return names


def _readers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def median_by_node(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each profiled name's median over the rounds, under the name of the node ONNX Runtime
    made it from (``dense_3/MatMulAddFusion``, ``x_DQ/duplicated`` -> ``dense_3``, ``x_DQ``)."""
    merged: list[dict[str, float]] = []
    for r in rounds:
        m: dict[str, float] = {}
        for name, ms in r.items():
            key = _ORT_SUFFIX.sub("", name)
            m[key] = m.get(key, 0.0) + ms
        merged.append(m)
    names = {n for r in merged for n in r}
    return {n: float(np.median([r.get(n, 0.0) for r in merged])) for n in names}


def attribute(profiled: Mapping[str, float], aliases: Mapping[str, set[str]]) -> dict[str, float]:
    """Per node: the sum of the profiled times of its aliases (nodes never profiled are left
    out); an alias shared by k nodes counts 1/k to each."""
    share: dict[str, int] = {}
    for names in aliases.values():
        for a in names:
            share[a] = share.get(a, 0) + 1
    return {
        node: sum(profiled.get(a, 0.0) / share[a] for a in names)
        for node, names in aliases.items()
        if any(a in profiled for a in names)
    }


def int8_aliases(int8: onnx.ModelProto, prepared: onnx.ModelProto) -> dict[str, set[str]]:
    """Per node of ``prepared``: its name in ``int8`` (a fused integer kernel keeps it) and the
    Q/DQ nodes its quantization put there: those on its output (traced up through Q/DQ chains),
    and those on a weight or a graph input that only it reads."""
    producer = {out: n for n in int8.graph.node for out in n.output}
    readers = _readers(int8)
    aliases: dict[str, set[str]] = {n.name: {n.name} for n in prepared.graph.node}
    for node in int8.graph.node:
        if node.op_type not in _QDQ:
            continue
        names = {node.name, *node.output}  # a re-laid-out Q/DQ is profiled under its output
        src = node
        while src.input[0] in producer and producer[src.input[0]].op_type in _QDQ:
            src = producer[src.input[0]]
        owner = producer.get(src.input[0])
        if owner is not None and owner.name in aliases:
            aliases[owner.name].update(names)
            continue
        for user in _compute_readers(node, readers):
            if user.name in aliases:
                aliases[user.name].update(names)
    return aliases


def _compute_readers(
    node: onnx.NodeProto, readers: Mapping[str, list[onnx.NodeProto]]
) -> list[onnx.NodeProto]:
    """The first non-Q/DQ nodes reading ``node``'s output, through Q/DQ chains."""
    found: list[onnx.NodeProto] = []
    todo = [node]
    while todo:
        for user in readers.get(todo.pop().output[0], []):
            (todo if user.op_type in _QDQ else found).append(user)
    return found
