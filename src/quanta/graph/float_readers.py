"""Nodes kept float between int8 neighbours, kept float in ONNX Runtime too.

Keeping a node float in the QDQ graph is not enough for ONNX Runtime to run it in float. When
it reads a DequantizeLinear and an int8 node reads its output (so a QuantizeLinear follows
it), it sits in the pattern of ONNX Runtime's QDQ fusions and is fused back into an integer
kernel (1.32, measured):

- a Conv or Gemm with float weights becomes QLinearConv / QGemm: ``WeightBiasQuantization``
  first quantizes the float weight per tensor, coarser than quanta's per-channel grid;
- Sigmoid, Softmax, LeakyRelu and AveragePool become QLinear kernels, a Concat QLinearConcat;
- a Relu or Clip after the node does not stop it: it is dropped before the QuantizeLinear.

Those fusions take only a DequantizeLinear with one scale for the whole tensor. So a node kept
float reads its uint8 inputs through a DequantizeLinear of its own, with one scale per channel,
all equal (``float_inputs_apart``): the same values, no fusion, and its int8 readers stay int8.
Ops that only move values on their input's grid (MaxPool, Reshape, ...) are left as they are:
fused back, they move the same values.

NOTE: int8 activations are left shared. On x86, ONNX Runtime runs int8 QDQ pairs as uint8
(``QDQS8ToU8Transformer``), and it does not convert a pair one of whose DequantizeLinears is
per channel: the int8 layer before the kept node then lost its integer kernel (measured on a
three-Conv graph: two QLinearConv became one). quanta picks uint8 activations wherever ONNX
Runtime leaves fewer layers float with them, which is the common case on x86.

A Concat kept float because its inputs' ranges differ (``quanta.graph.concats``) needs more:
an int8 reader would still put its output on one grid. Its int8 readers are kept float with it
(``readers_of``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.ops import REGISTRY
from quanta.graph.planner import StaticPlan
from quanta.graph.result import FloatKind, FloatReason
from quanta.graph.rewrite import Names

__all__ = ["float_inputs_apart", "readers_of"]

Dims = Mapping[str, list[int | None]]  # tensor -> its dimensions (None: unknown)


def readers_of(
    model: onnx.ModelProto, plan: StaticPlan, concats: Mapping[str, str]
) -> dict[str, FloatReason]:
    """The nodes planned int8 in ``plan`` that read the output of a Concat in ``concats`` (kept
    float, name -> reason), each with its reason."""
    outputs = {
        node.output[0]: node.name
        for node in model.graph.node
        if node.name in concats and node.op_type == "Concat"
    }
    readers: dict[str, FloatReason] = {}
    for node in model.graph.node:
        op_plan = plan.plans.get(node.name)
        if op_plan is None or node.name in concats:
            continue
        read = [node.input[i] for i in op_plan.activations]
        if op_plan.output == "shared":
            read.append(node.input[0])
        for name in read:
            if name in outputs:
                reason = concats[outputs[name]]
                kind = reason.kind if isinstance(reason, FloatReason) else FloatKind.RANGES
                readers[node.name] = FloatReason(
                    f"kept float: it reads {outputs[name]!r}, a Concat kept float", kind
                )
    return readers


def float_inputs_apart(model: onnx.ModelProto, plan: StaticPlan, dims: Dims, names: Names) -> int:
    """Give each node of ``model`` (QDQ, in place) that ``plan`` keeps float, of an op type
    ONNX Runtime could fuse into an integer kernel, its own per-channel DequantizeLinear of
    each uint8 activation it reads (module doc). A tensor whose channel count is unknown, and
    an int8 one, is left shared. Returns how many DequantizeLinears were added."""
    index = GraphIndex(model)
    inits = {t.name: t for t in model.graph.initializer}
    added: list[tuple[int, onnx.NodeProto]] = []
    new_inits: list[onnx.TensorProto] = []
    made: dict[str, str] = {}  # tensor -> its per-channel copy (one per tensor)
    kept = {f.name for f in plan.float_nodes}
    for position, node in enumerate(model.graph.node):
        if node.name not in kept or node.op_type not in REGISTRY or _moves(node, index):
            continue
        for k, name in enumerate(node.input):
            dq = index.producer.get(name)
            if not _activation_dequantize(dq, index):
                continue
            assert dq is not None  # checked above
            if name not in made:
                shape = dims.get(name) or dims.get(index.producer[dq.input[0]].input[0])
                copy = _per_channel_copy(dq, shape, inits, names, new_inits)
                if copy is None:
                    continue
                made[name] = copy.output[0]
                added.append((position, copy))
            node.input[k] = made[name]
    for offset, (position, copy) in enumerate(added):
        model.graph.node.insert(position + offset, copy)
    model.graph.initializer.extend(new_inits)
    return len(added)


def _moves(node: onnx.NodeProto, index: GraphIndex) -> bool:
    """Whether ``node`` in int8 would write its input's grid (a MaxPool, a Reshape): fused back,
    it moves the same values. A Concat does not: it puts its inputs on one grid."""
    op_plan = REGISTRY[node.op_type](node, index)
    return not isinstance(op_plan, str) and op_plan.output == "shared"


def _activation_dequantize(dq: onnx.NodeProto | None, index: GraphIndex) -> bool:
    """A DequantizeLinear of a QuantizeLinear's output (an activation pair, not a weight)."""
    if dq is None or dq.op_type != "DequantizeLinear":
        return False
    q = index.producer.get(dq.input[0])
    return q is not None and q.op_type == "QuantizeLinear"


def _per_channel_copy(
    dq: onnx.NodeProto,
    shape: Iterable[int | None] | None,
    inits: Mapping[str, onnx.TensorProto],
    names: Names,
    new_inits: list[onnx.TensorProto],
) -> onnx.NodeProto | None:
    dims = list(shape) if shape is not None else []
    axis = 1 if len(dims) >= 2 else 0
    if not dims or dims[axis] is None or any(name not in inits for name in dq.input[1:]):
        return None
    channels = int(dims[axis])  # type: ignore[arg-type]
    scale = numpy_helper.to_array(inits[dq.input[1]])
    zp = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 else np.uint8(0)
    if scale.ndim != 0 or zp.dtype != np.uint8:
        return None  # int8: see the module doc
    base = dq.output[0]
    scales = names.fresh(f"{base}_channel_s")
    new_inits.append(numpy_helper.from_array(np.full(channels, scale, scale.dtype), scales))
    zps = names.fresh(f"{base}_channel_zp")
    new_inits.append(numpy_helper.from_array(np.full(channels, zp, np.uint8), zps))
    inputs = [dq.input[0], scales, zps]
    return helper.make_node(
        "DequantizeLinear", inputs, [names.fresh(f"{base}_float")],
        name=names.fresh(f"{base}_float_DQ"), axis=axis,
    )  # fmt: skip
