"""Building blocks of the quantization passes: fresh names, weight and bias tensors, QDQ nodes.

Names of what the passes add, after the tensor ``T`` they belong to: ``T_q`` the integer tensor,
``T_s`` its scale, ``T_zp`` its zero point, ``T_dq`` the dequantized float tensor, ``T_pre`` a
producer's float output before its QuantizeLinear, ``T_w`` a weight decoded from int8; nodes
``T_Q`` / ``T_DQ``. Short on purpose: a per-channel model has hundreds of them, each written
several times, and they count in the file size users compare. Readable while the passes run;
``quanta.graph.compact`` then renames them shorter still (``q1``, ``s2``, ``n3``) in the
file it writes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.quant import QParams, choose_qparams, quantize

__all__ = [
    "Names",
    "int8_decoder",
    "quantize_weight",
    "quantize_bias",
    "qparams_initializers",
    "remove_unused",
]


class Names:
    """Hands out tensor/node names that do not collide with any name already in the graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self._used = {t.name for t in g.initializer} | {v.name for v in [*g.input, *g.output]}
        for node in g.node:
            self._used.update(node.input)
            self._used.update(node.output)
            self._used.add(node.name)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name


REDUCED_MAX = 64  # 7-bit weights: 2 x 255 x 64 = 32,640 fits int16 pair sums


def quantize_weight(
    weight: np.ndarray, axis: int | None, *, reduced: bool = False
) -> tuple[np.ndarray, QParams]:
    """Symmetric int8 in ``[-127, 127]`` (``reduced``: ``[-64, 64]``, for CPUs whose int8 dot
    products saturate in int16), per slice along ``axis`` (None: one scale per tensor)."""
    w = weight.astype(np.float32)
    if axis is None:
        qp = choose_qparams(float(w.min()), float(w.max()), "int8", symmetric=True)
    else:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)  # (C, rest)
        qp = choose_qparams(moved.min(axis=1), moved.max(axis=1), "int8", symmetric=True, axis=axis)
    if reduced:
        scale = (qp.scale.astype(np.float64) * (127 / REDUCED_MAX)).astype(np.float32)
        qp = QParams(scale, qp.zero_point, qp.dtype, qp.axis, narrow=qp.narrow)
    return quantize(w, qp), qp


def quantize_bias(
    bias: np.ndarray, input_scale: np.ndarray, weight: QParams
) -> tuple[np.ndarray, QParams]:
    """int32 bias with zero point 0 and scale ``s_in * s_w`` (per channel when the weight is).

    The product is taken in float32, as the runtime's integer kernels take it.
    """
    scale = (np.float32(input_scale) * weight.scale).astype(np.float32)
    per_channel = scale.ndim == 1
    qp = QParams(scale, np.zeros(scale.shape, np.int32), "int32", axis=0 if per_channel else None)
    b = bias.astype(np.float64) / scale.astype(np.float64)
    q = np.clip(np.rint(b), -(2**31), 2**31 - 1).astype(np.int32)
    return q, qp


def qparams_initializers(
    qp: QParams, base: str, names: Names
) -> tuple[list[onnx.TensorProto], str, str]:
    """Scale and zero-point initializers for a Q/DQ node; returns them and their names."""
    scale_name = names.fresh(f"{base}_s")
    zp_name = names.fresh(f"{base}_zp")
    scale = numpy_helper.from_array(np.asarray(qp.scale, np.float32), scale_name)
    zp = numpy_helper.from_array(np.asarray(qp.zero_point, qp.storage_type), zp_name)
    return [scale, zp], scale_name, zp_name


def dequantize_node(
    q_name: str, qp: QParams, out: str, base: str, names: Names
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    inits, s, z = qparams_initializers(qp, base, names)
    # make_node skips attributes whose value is None, so a per-tensor node gets no axis.
    node = helper.make_node(
        "DequantizeLinear",
        [q_name, s, z],
        [out],
        name=names.fresh(f"{base}_DQ"),
        axis=qp.axis,
    )
    return node, inits


def int8_decoder(
    q: np.ndarray, scale: np.ndarray, base: str, names: Names
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``Cast(q) * scale`` with ``scale`` already shaped to broadcast against ``q`` (e.g. one
    scale per direction and gate row of a recurrent weight, ``(D, G·H, 1)``). A float16
    ``scale`` is widened by a ``Cast`` of its own, ``Cast(q) * Cast(scale)``: the product is
    taken in float32, where it is exact (``quanta.graph.half_scales``)."""
    q_name = names.fresh(f"{base}_q")
    scale_name = names.fresh(f"{base}_s")
    cast_out = names.fresh(f"{base}_c")
    out = names.fresh(f"{base}_w")
    half = np.asarray(scale).dtype == np.float16
    scale = np.asarray(scale, np.float16 if half else np.float32)
    inits = [numpy_helper.from_array(q, q_name), numpy_helper.from_array(scale, scale_name)]
    nodes = [_cast_to_float(q_name, cast_out, names.fresh(f"{base}_Cast"))]
    if half:
        wide = names.fresh(f"{base}_sc")
        nodes.append(_cast_to_float(scale_name, wide, names.fresh(f"{base}_Cast")))
        scale_name = wide
    nodes.append(
        helper.make_node("Mul", [cast_out, scale_name], [out], name=names.fresh(f"{base}_Mul"))
    )
    return nodes, inits


def _cast_to_float(x: str, out: str, name: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [x], [out], to=onnx.TensorProto.FLOAT, name=name)


def remove_unused(model: onnx.ModelProto) -> None:
    """Drop initializers that no node reads any more (the float weights that were replaced)."""
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    removed = {t.name for t in model.graph.initializer} - {t.name for t in keep}
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    inputs = [i for i in model.graph.input if i.name not in removed]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
