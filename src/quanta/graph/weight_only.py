"""Int8 storage for the weights of nodes that compute in float.

A node kept float (by measurement, or because int8 would be slower) still needn't cost four bytes
per weight in the file: its weight is stored as int8 with one scale per output channel (per row
for an embedding table) and decoded by ``Cast -> Mul``, which ONNX Runtime folds into a float
constant when the session starts (``quanta.graph.rewrite.int8_decoder``). The arithmetic
stays float; only the weight rounding remains, and bias correction takes that out of the mean.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.bias_correction import bias_shift
from quanta.graph.half_scales import half_scales, scale_bytes
from quanta.graph.index import GraphIndex
from quanta.graph.ops import get_attr
from quanta.graph.rewrite import Names, int8_decoder, quantize_weight, remove_unused
from quanta.opfacts import FACTS, Backend, weight_axis

__all__ = [
    "calibrated_int8",
    "compress_float_weights",
    "computes_int8",
    "decoded_weights",
    "float_weight_slots",
    "run_time_int8",
    "saves_bytes",
    "stored_int8",
]

# NOTE: the decoder costs bytes of its own: a Cast and a Mul node, two initializer headers, and
# a name each (short ones after compact QDQ). A weight is stored int8 only where its 3 bytes a
# value saved pay for the decoder and its scales: on a 0.6 MB OCR classifier (rapidocr_cls) the
# weights under 1,024 values, once kept float32, were 19 KB of a 0.2 MB int8 file.
DECODER_BYTES = 80


# A node kept float for its answers (measured, or asked for) keeps a weight this small float32:
# the rounding is what it was kept float to avoid, and at most 3 KB is at stake. So does a small
# embedding table: a gathered row is added to the stream as it is, with no dot product to
# average its rounding out (MiniLM's 2 x 384 token-type table int8 took the fully int8 model's
# held-out cosine from 0.9903 to 0.9897, for 2 KB of 23 MB).
EXACT_BELOW = 1024


def saves_bytes(weight: np.ndarray, scale: np.ndarray) -> bool:
    """Whether int8 values, ``scale`` (float32, or float16 and its ``Cast``) and a decoder are
    smaller than float32 ``weight``."""
    return 4 * weight.size > weight.size + scale_bytes(scale) + DECODER_BYTES


# W and R of these are (num_directions, gates * hidden, in): the rows of each direction are
# output channels of their own, so each direction gets its own scale per row.
_RECURRENT = ("LSTM", "GRU")


def _weight_slots(node: onnx.NodeProto) -> list[int]:
    """Input indices of the weights of a node this pass covers (``Backend.WEIGHT_ONLY``)."""
    facts = FACTS.get(node.op_type)
    if facts is None or Backend.WEIGHT_ONLY not in facts.backends or facts.weight is None:
        return []
    if node.op_type == "Gather" and int(get_attr(node, "axis", 0)) != 0:
        return []  # only a table gathered by rows is an embedding with one scale per row
    return [k for k in (facts.weight, *facts.more_weights) if len(node.input) > k and node.input[k]]


def _channel_axis(node: onnx.NodeProto, rank: int) -> int | None:
    """The output-channel axis of a weight of ``rank`` dimensions, if it has a single one."""
    required_rank = FACTS[node.op_type].weight_rank
    return weight_axis(node) if required_rank is None or rank == required_rank else None


def stored_int8(
    node: onnx.NodeProto, w: np.ndarray, axis: int | None, half: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 values of ``w`` and their scales, shaped to broadcast against them: one
    per slice along ``axis`` (None: one for the tensor), and for a recurrent weight one per
    (direction, gate row): a bidirectional layer's two directions are separate weights that
    ONNX stacks on axis 0, and on LAC's GRUs (lac_gru) their row ranges differ by a median
    1.2-1.3x, so one scale for both costs 8-14 % more rounding error. With ``half`` the scales
    are float16 where that is smaller (``quanta.graph.half_scales``), else float32."""
    if node.op_type in _RECURRENT and axis == 1 and w.ndim == 3:
        q, qp = quantize_weight(w.reshape(-1, w.shape[2]), 0)  # (D * G·H, in)
        scale = np.asarray(qp.scale, np.float32).reshape(w.shape[0], w.shape[1], 1)
        q = q.reshape(w.shape)
    else:
        q, qp = quantize_weight(w, axis)
        scale = np.asarray(qp.scale, np.float32).reshape(qp.broadcast_shape(w.ndim))
    return (half_scales(w, q, scale) if half else None) or (q, scale)


def float_weight_slots(model: onnx.ModelProto, op_types: Collection[str]) -> dict[str, int]:
    """The float constant weights of ``op_types`` nodes that ``compress_float_weights`` would
    store as int8, name -> element count."""
    index = GraphIndex(model)
    found: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for k in _weight_slots(node):
            slot = node.input[k]
            if index.is_constant(slot) and index.is_float(slot):
                w = index.constant(slot)
                axis = _channel_axis(node, w.ndim)
                if axis is not None and saves_bytes(w, stored_int8(node, w, axis)[1]):
                    found[slot] = int(w.size)
    return found


def decoded_weights(model: onnx.ModelProto) -> int:
    """How many int8 initializers a ``Cast`` to float decodes (weights stored int8 for nodes
    that compute in float; ``quanta.graph.rewrite.int8_decoder``)."""
    int8 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    return sum(
        n.op_type == "Cast" and n.input[0] in int8 and get_attr(n, "to") == onnx.TensorProto.FLOAT
        for n in model.graph.node
    )


def computes_int8(model: onnx.ModelProto) -> bool:
    """Whether any tensor computed at run time is quantized, or any integer op runs (else every
    layer computes in float, whatever its weights are stored as)."""
    return calibrated_int8(model) or any(
        n.op_type in (*RUN_TIME_QUANTIZERS, "ConvInteger", "MatMulInteger")
        for n in model.graph.node
    )


# Ops that quantize their input with a range measured on every run (dynamic int8)
RUN_TIME_QUANTIZERS = ("DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM")


def run_time_int8(model: onnx.ModelProto) -> int:
    """How many ops quantize their input with a range measured on every run (dynamic int8)."""
    return sum(n.op_type in RUN_TIME_QUANTIZERS for n in model.graph.node)


def calibrated_int8(model: onnx.ModelProto) -> bool:
    """Whether any tensor computed at run time is quantized on a fixed (calibrated) grid:
    a QuantizeLinear of an activation, or a QLinear*/QGemm kernel."""
    inits = {t.name for t in model.graph.initializer}
    return any(
        (n.op_type == "QuantizeLinear" and n.input[0] not in inits)
        or n.op_type.startswith("QLinear")
        or n.op_type == "QGemm"
        for n in model.graph.node
    )


def _fp16_decoder(
    w: np.ndarray, base: str, names: Names
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``Cast(w16)`` to float32, which ONNX Runtime folds into a constant at session start."""
    w16_name, out = names.fresh(f"{base}_h"), names.fresh(f"{base}_w")
    init = numpy_helper.from_array(w.astype(np.float16), w16_name)
    cast = helper.make_node(
        "Cast", [w16_name], [out], to=onnx.TensorProto.FLOAT, name=names.fresh(f"{base}_Cast")
    )
    return [cast], [init]


def compress_float_weights(
    model: onnx.ModelProto,
    *,
    per_channel: bool = True,
    input_means: Mapping[str, np.ndarray] | None = None,
    exact: Collection[str] = (),
    fp16: Collection[str] = frozenset(),
) -> int:
    """Store every remaining float weight of Conv/Gemm/MatMul/Gather/LSTM/GRU as int8, in place,
    where that makes the file smaller (``saves_bytes``); the weights named in ``fp16`` as float16
    instead (``quanta.graph.storage``).

    Weights already quantized by another pass are no longer constants and are left alone; the
    nodes named in ``exact`` (kept float for their answers) keep weights under ``EXACT_BELOW``
    values float32, and float32 scales. Returns how many weights were compressed.
    """
    input_means = input_means or {}
    index = GraphIndex(model)
    names = Names(model)
    head: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    decoded: dict[tuple[str, int | None], str] = {}  # one int8 copy of a weight many nodes read
    count = 0
    for node in model.graph.node:
        for k in _weight_slots(node):
            slot = node.input[k]
            if not index.is_constant(slot) or not index.is_float(slot):
                continue
            w = index.constant(slot)
            axis = _channel_axis(node, w.ndim)
            if axis is None:
                continue
            key = (slot, axis if per_channel else None)
            stored = None  # int8 values and scales; None: float16 storage (``fp16``)
            if slot not in fp16:
                # NOTE: a node kept float for its answers keeps small weights float32 and
                # float32 scales: on MobileNetV2 float16 scales on its 13-16 such layers moved the
                # fidelity search's stopping point (16 -> 13 layers) and top-1 agreement 91.7 ->
                # 89.6 %; so does an embedding table, whose rows are added as they are (on
                # MiniLM float16 scales moved the worst held-out cosine 0.9903 -> 0.9886)
                tight = node.name in exact or node.op_type == "Gather"
                if tight and w.size < EXACT_BELOW:
                    continue
                stored = stored_int8(node, w, key[1], half=not tight)
                if not saves_bytes(w, stored[1]):
                    continue
            if key not in decoded:
                decode, inits = (
                    _fp16_decoder(w, slot, names) if stored is None
                    else int8_decoder(*stored, slot, names)
                )  # fmt: skip
                head.extend(decode)
                new_inits.extend(inits)
                decoded[key] = decode[-1].output[0]
                count += 1
            node.input[k] = decoded[key]
            if stored is None:
                continue
            q, scale = stored
            facts = FACTS[node.op_type]
            mean = (
                input_means.get(node.input[0]) if facts.bias_correction_axis is not None else None
            )
            has_bias = len(node.input) > 2 and node.input[2] and index.is_constant(node.input[2])
            if k == facts.weight and mean is not None and has_bias:
                decoded_w = q.astype(np.float32) * scale.astype(np.float32)  # as ORT folds it
                shift = bias_shift(node, w, decoded_w, mean)
                if shift is not None:
                    b = index.constant(node.input[2]).astype(np.float64) + shift
                    b_name = names.fresh(f"{node.input[2]}_corrected")
                    new_inits.append(numpy_helper.from_array(b.astype(np.float32), b_name))
                    node.input[2] = b_name
    if count:
        nodes = [*head, *model.graph.node]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(new_inits)
        remove_unused(model)
    return count
