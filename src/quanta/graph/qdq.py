"""The one place QuantizeLinear/DequantizeLinear nodes are made for activations.

Static quantization (``quanta.graph.apply_qdq``), the per-layer sensitivity of
``quanta.diagnose.layers`` and the op-by-op models of ``quanta.ref.verify`` all put a tensor on an
integer grid and back; they share these helpers so that the names, and the order of inputs the
runtimes read, are written once. Names follow ``quanta.graph.rewrite``: ``T_s``, ``T_zp``,
``T_q``, nodes ``T_Q`` / ``T_DQ``.
"""

from __future__ import annotations

import onnx
from onnx import helper

from quanta.graph.rewrite import Names, qparams_initializers
from quanta.quant import QParams

__all__ = ["dequantize_back", "qdq_pair"]


def qdq_pair(
    qp: QParams, tensor: str, names: Names, *, source: str, dest: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``source -> QuantizeLinear -> DequantizeLinear -> dest`` on the grid ``qp``.

    ``tensor`` names what is added (``tensor_s``, ``tensor_zp``, ``tensor_q``, ``tensor_Q``,
    ``tensor_DQ``). Returns the two nodes, in graph order, and the new scale and zero-point
    initializers, for the caller to place.
    """
    inits, scale, zero_point = qparams_initializers(qp, tensor, names)
    q_name = names.fresh(f"{tensor}_q")
    nodes = [
        helper.make_node("QuantizeLinear", [source, scale, zero_point], [q_name],
                         name=names.fresh(f"{tensor}_Q")),
        helper.make_node("DequantizeLinear", [q_name, scale, zero_point], [dest],
                         name=names.fresh(f"{tensor}_DQ")),
    ]  # fmt: skip
    return nodes, inits


def dequantize_back(quantize: onnx.NodeProto, dest: str) -> onnx.NodeProto:
    """A DequantizeLinear (unnamed) that maps ``quantize``'s integers back to float on the same
    grid: it reads the QuantizeLinear's own scale and zero point."""
    return helper.make_node("DequantizeLinear", [quantize.output[0], *quantize.input[1:]], [dest])
