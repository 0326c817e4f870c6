"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"): equal weight ranges
in consecutive convolutions, the float function unchanged.

Where a Conv's output reaches the next Conv only through a positively homogeneous op
(``f(x / s) = f(x) / s`` for ``s > 0``, per channel: nothing, Relu, LeakyRelu, PRelu), channel
``c`` of the first can be divided by ``s_c > 0`` (its filter and bias) and the input channel
``c`` of the second multiplied by it, and the model computes the same function. With
``r1_c = max |W1[c]|`` and ``r2_c = max |W2[:, c]|``, ``s_c = sqrt(r1_c / r2_c)`` makes both
``sqrt(r1_c · r2_c)``: the second layer's rows no longer span input channels of very different
size, so its one scale per output row wastes fewer of its 255 steps on a few large channels.
The activation between them changes by ``1 / s_c`` per channel too. Chains are equalized in
sweeps until the scales settle.

Only pairs whose weights are constants read by that Conv alone, the first's output read by
the op between alone and that op's by the second Conv alone, and the second Conv of one group,
are changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import get_attr
from quanta.graph.rewrite import Names

__all__ = ["equalize_layers"]

HOMOGENEOUS = frozenset({"Relu", "LeakyRelu", "PRelu"})
SWEEPS = 20
SETTLED = 1e-3  # a sweep whose scales all lie within this of 1 ends the equalization
SCALE_LIMIT = 1e3  # at most this factor either way (a nearly dead channel is left alone)


@dataclass
class _Pair:
    first: onnx.NodeProto
    second: onnx.NodeProto


def _pairs(model: onnx.ModelProto) -> list[_Pair]:
    index = GraphIndex(model)
    own_constant = index.owns_initializer
    pairs = []
    for first in model.graph.node:
        if first.op_type != "Conv" or not own_constant(first, 1):
            continue
        if len(first.input) > 2 and first.input[2] and not own_constant(first, 2):
            continue
        between = index.sole_consumer(first.output[0])
        second: onnx.NodeProto | None = between
        if between is not None and between.op_type in HOMOGENEOUS:
            if between.op_type == "PRelu" and not index.is_constant(between.input[1]):
                continue
            second = index.sole_consumer(between.output[0])
        if second is None or second.op_type != "Conv":
            continue
        if int(get_attr(second, "group", 1)) != 1 or not own_constant(second, 1):
            continue
        w1, w2 = (index.initializers[n.input[1]].dims for n in (first, second))
        if len(w2) < 2 or w1[0] != w2[1]:
            continue
        pairs.append(_Pair(first, second))
    return pairs


def equalize_layers(model: onnx.ModelProto) -> int:
    """Equalize every eligible Conv pair of ``model`` in place (module docstring); return how
    many pairs changed."""
    pairs = _pairs(model)
    if not pairs:
        return 0
    inits = {t.name: t for t in model.graph.initializer}
    values = {
        name: numpy_helper.to_array(inits[name]).astype(np.float64)
        for p in pairs
        for name in [p.first.input[1], p.second.input[1], *p.first.input[2:3]]
        if name
    }
    for _ in range(SWEEPS):
        moved = 0.0
        for p in pairs:
            w1, w2 = values[p.first.input[1]], values[p.second.input[1]]
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = np.abs(np.moveaxis(w2, 1, 0)).reshape(w2.shape[1], -1).max(axis=1)
            live = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[live] = np.sqrt(r1[live] / r2[live])
            s = np.clip(s, 1 / SCALE_LIMIT, SCALE_LIMIT)
            values[p.first.input[1]] = w1 / s.reshape(-1, *[1] * (w1.ndim - 1))
            if len(p.first.input) > 2 and p.first.input[2]:
                values[p.first.input[2]] = values[p.first.input[2]] / s
            values[p.second.input[1]] = w2 * s.reshape(1, -1, *[1] * (w2.ndim - 2))
            moved = max(moved, float(np.abs(np.log(s)).max()))
        if moved < SETTLED:
            break
    names = Names(model)
    for name, value in values.items():
        fresh = names.fresh(f"{name}_equalized")
        model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), fresh))
        for p in pairs:
            for node in (p.first, p.second):
                for k, i in enumerate(node.input):
                    if i == name:
                        node.input[k] = fresh
        model.graph.initializer.remove(inits[name])
    return len(pairs)
