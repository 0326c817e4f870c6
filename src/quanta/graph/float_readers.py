"""Convolutions and Gemms kept float between int8 neighbours, kept float in ONNX Runtime too.

Keeping a node float in the QDQ graph is not enough for ONNX Runtime to run it in float. A
float Conv or Gemm that reads a DequantizeLinear, and whose output an int8 node reads (so a
QuantizeLinear follows it), is fused back into QLinearConv / QGemm (1.32, measured):
``WeightBiasQuantization`` first quantizes its float weight per tensor, coarser than quanta's
per-channel grid. A Relu or Clip after it does not stop that: it is dropped before the
QuantizeLinear. On MobileNetV2 one of the 16 layers the fidelity search kept float ran so.

Those fusions take only a DequantizeLinear with one scale for the whole tensor. So a Conv or
Gemm kept float reads its uint8 inputs through a DequantizeLinear of its own, with one scale per
channel, all equal (``float_inputs_apart``): the same values, no fusion, and its int8 readers
stay int8.

NOTE: only Conv and Gemm get the copy, and only of uint8 activations; measured on ONNX Runtime
1.32 with a QuantizeLinear after the op:

- Sigmoid, LeakyRelu and GlobalAveragePool are fused all the same, and the integer kernel then
  fails on the per-channel scale ("X_scale must be a scalar"): those keep the shared one, and
  are fused back as before when an int8 node reads them;
- on x86 ONNX Runtime runs int8 QDQ pairs as uint8 (``QDQS8ToU8Transformer``) and does not
  convert a pair one of whose DequantizeLinears is per channel: the int8 layer before the kept
  node lost its integer kernel (a three-Conv graph: two QLinearConv became one). quanta picks
  uint8 activations wherever ONNX Runtime leaves fewer layers float with them, the common case
  on x86.

A Concat kept float because its inputs' ranges differ (``quanta.graph.concats``) needs more: an
int8 reader would still put its output on one grid. Its int8 readers are kept float with it
(``readers_of``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.planner import StaticPlan
from quanta.graph.result import FloatKind, FloatReason
from quanta.graph.rewrite import Names

__all__ = ["float_inputs_apart", "readers_of"]

# float ops ONNX Runtime fuses back, and which a per-channel DequantizeLinear keeps float
FUSED_BACK = frozenset({"Conv", "Gemm"})


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


def float_inputs_apart(model: onnx.ModelProto, plan: StaticPlan, names: Names) -> int:
    """Give each Conv/Gemm of ``model`` (QDQ, in place, its shape-inferred ``value_info`` still
    there) that ``plan`` keeps float its own per-channel DequantizeLinear of the uint8
    activation it reads (module doc). A tensor whose channel count is unknown, and an int8
    one, is left shared. Returns how many DequantizeLinears were added."""
    kept = {f.name for f in plan.float_nodes if f.op_type in FUSED_BACK}
    if not kept:
        return 0  # most builds: nothing to do, no index to build
    index = GraphIndex(model)
    dims = _dims(model.graph)
    inits = {t.name: t for t in model.graph.initializer}
    added: list[tuple[int, onnx.NodeProto]] = []
    new_inits: list[onnx.TensorProto] = []
    made: dict[str, str] = {}  # tensor -> its per-channel copy (one per tensor)
    for position, node in enumerate(model.graph.node):
        name = node.input[0] if node.name in kept else ""  # the activation; weight and bias
        dq = index.producer.get(name)  # are constants
        q = index.producer.get(dq.input[0]) if dq and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear":
            continue  # not an activation pair's DequantizeLinear
        if name not in made:
            shape = dims.get(name) or dims.get(q.input[0])  # a graph input's is T_dq
            copy = _per_channel_copy(dq, shape, inits, names, new_inits)  # type: ignore[arg-type]
            if copy is None:
                continue
            made[name] = copy.output[0]
            added.append((position, copy))
        node.input[0] = made[name]
    for offset, (position, copy) in enumerate(added):
        model.graph.node.insert(position + offset, copy)
    model.graph.initializer.extend(new_inits)
    return len(added)


def _dims(graph: onnx.GraphProto) -> dict[str, list[int | None]]:
    """Each tensor's dimensions as shape inference left them (None: unknown)."""
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else None
                 for d in v.type.tensor_type.shape.dim]
        for v in (*graph.input, *graph.value_info, *graph.output)
        if v.type.tensor_type.HasField("shape")
    }  # fmt: skip


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
