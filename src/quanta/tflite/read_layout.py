"""Fewer layout Transposes in an imported TFLite graph: each op ONNX defines on NCHW (Conv, pools,
Resize) is imported between an NHWC -> NCHW and an NCHW -> NHWC Transpose; between two such ops
the pair cancels.

Two rewrites, repeated until neither applies:

- Transposes feeding an op that works on each value alone (Relu, Clip, Sigmoid, ...; Add, Mul,
  ... when every non-scalar operand comes through a Transpose of the same permutation; PRelu and
  Pad, their slope or pads permuted) move after it: ``Relu(Transpose(x)) ==
  Transpose(Relu(x))``, so a fused activation or a residual Add no longer separates two
  Transposes;
- a Transpose whose input is another Transpose with the inverse permutation is that Transpose's
  input.

Tensor names that the graph exposes (its outputs) keep their meaning; Transposes nothing reads
are dropped. The quantizer then sees ``Conv -> Relu -> Conv`` on NCHW, as from any ONNX
exporter, and the TFLite writer only the Transposes at the edges of an NCHW run.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.tflite.read_context import ImportContext

__all__ = ["Constants", "cancel_transposes"]


class Constants:
    """The import's initializers by name, and fresh names, for the rewrites."""

    def __init__(self, ctx: ImportContext) -> None:
        self.ctx = ctx
        self.values = {t.name: numpy_helper.to_array(t) for t in ctx.initializers}

    def add(self, base: str, value: np.ndarray) -> str:
        name = self.ctx.constant(base, value)
        self.values[name] = value
        return name

    def fresh(self, base: str) -> str:
        return self.ctx.fresh(base)


_BINARY = frozenset({"Add", "Mul", "Sub", "Div", "Max", "Min"})
# ops that compute each output value from the same position of their one data input
_POINTWISE = frozenset(
    {"Relu", "Clip", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Abs"}
)


def _perm(node: onnx.NodeProto) -> list[int]:
    return next(list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm")


def _inverse(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and [a[i] for i in b] == list(range(len(a)))


def cancel_transposes(
    nodes: list[onnx.NodeProto], outputs: set[str], consts: Constants
) -> list[onnx.NodeProto]:
    """``nodes`` (in graph order) with the layout Transposes moved and cancelled; see the module
    doc. ``outputs``: the graph's output names, which are always still produced; ``consts``: the
    initializers, to which permuted copies of PRelu slopes and Pad pads are added."""
    nodes = list(nodes)
    while _move_one(nodes, consts) or _cancel_one(nodes, outputs):
        pass
    return _drop_unread(nodes, outputs)


def _readers(nodes: list[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in nodes:
        for name in n.input:
            readers[name].append(n)
    return readers


def _move_one(nodes: list[onnx.NodeProto], consts: Constants) -> bool:
    """Move the Transposes feeding one op after it: the op reads their inputs (its constants
    permuted to match) and a new Transpose writes the op's output name."""
    producer = {o: n for n in nodes for o in n.output}
    for op in nodes:
        data = _data_inputs(op, consts)
        if not data:
            continue
        ts = [producer.get(op.input[k]) for k in data]
        if any(t is None or t.op_type != "Transpose" for t in ts):
            continue
        perm = _perm(ts[0])  # type: ignore[arg-type]
        if any(_perm(t) != perm for t in ts) or not _fit_constants(op, perm, consts):  # type: ignore[arg-type]
            continue
        for k, t in zip(data, ts, strict=True):
            op.input[k] = t.input[0]  # type: ignore[union-attr]
        y = op.output[0]
        op.output[0] = consts.fresh(f"{y}_pre_transpose")
        after = helper.make_node(
            "Transpose", [op.output[0]], [y], perm=perm, name=consts.fresh(f"{y}_transpose")
        )
        nodes.insert(nodes.index(op) + 1, after)
        return True
    return False


def _data_inputs(op: onnx.NodeProto, consts: Constants) -> list[int]:
    """The positions of ``op``'s inputs that a Transpose may be moved past (empty: none)."""
    if op.op_type in _POINTWISE or op.op_type in ("PRelu", "Pad"):
        return [0] if op.input[0] not in consts.values else []
    if op.op_type in _BINARY:
        data = [k for k, name in enumerate(op.input) if name not in consts.values]
        scalar = all(consts.values[n].size == 1 for n in op.input if n in consts.values)
        return data if scalar else []
    return []


def _fit_constants(op: onnx.NodeProto, perm: list[int], consts: Constants) -> bool:
    """Permute the layout-bearing constant of a PRelu (slope) or Pad (pads) to the Transpose's
    input axes; False when it cannot be (then nothing is changed)."""
    inverse = [int(i) for i in np.argsort(perm)]
    if op.op_type == "PRelu":
        slope = consts.values.get(op.input[1])
        if slope is None or slope.ndim > len(perm):
            return False
        full = slope.reshape((1,) * (len(perm) - slope.ndim) + slope.shape)
        op.input[1] = consts.add(f"{op.input[1]}_transposed", full.transpose(inverse))
    elif op.op_type == "Pad":
        pads = consts.values.get(op.input[1]) if len(op.input) > 1 else None
        if pads is None or len(op.input) > 3 or pads.size != 2 * len(perm):
            return False
        begin, end = pads[: len(perm)], pads[len(perm) :]
        # output axis k is input axis perm[k]: input axis a takes output axis inverse[a]'s pads
        moved = np.concatenate([begin[inverse], end[inverse]])
        op.input[1] = consts.add(f"{op.input[1]}_transposed", moved.astype(pads.dtype))
    return True


def _cancel_one(nodes: list[onnx.NodeProto], outputs: set[str]) -> bool:
    """Bypass one Transpose that undoes the Transpose before it (its readers read the first
    Transpose's input); a graph output keeps its Transpose."""
    producer = {o: n for n in nodes for o in n.output}
    readers = _readers(nodes)
    for t2 in nodes:
        if t2.op_type != "Transpose" or t2.output[0] in outputs:
            continue
        t1 = producer.get(t2.input[0])
        if t1 is None or t1.op_type != "Transpose" or not _inverse(_perm(t1), _perm(t2)):
            continue
        source, gone = t1.input[0], t2.output[0]
        users = readers.get(gone, [])
        if not users:
            continue
        for user in users:
            for k, name in enumerate(user.input):
                if name == gone:
                    user.input[k] = source
        return True
    return False


def _drop_unread(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    while True:
        read = {name for n in nodes for name in n.input} | outputs
        kept = [n for n in nodes if n.op_type != "Transpose" or n.output[0] in read]
        if len(kept) == len(nodes):
            return kept
        nodes = kept
