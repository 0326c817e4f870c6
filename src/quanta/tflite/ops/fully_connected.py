"""Gemm and MatMul as FULLY_CONNECTED: weights (N, K) int8 per output channel, int32 bias.

A Flatten of an NHWC tensor before it was folded into the weights (``ops/layout.py``): their
input columns are reordered from (C, H, W) to (H, W, C) here.
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Context, attr
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def _unflatten_columns(ctx: Context, flat: str, w: np.ndarray) -> np.ndarray:
    """Fold the NCHW->NHWC flatten order into the weights' input columns."""
    if flat not in ctx.folded:
        return w
    c, h, wd = ctx.folded[flat]
    return w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def fc_weight(ctx: Context, node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """A Gemm/MatMul weight as FULLY_CONNECTED's (N, K), its columns in the input's order."""
    if node.op_type == "Gemm":
        if attr(node, "transA", 0) or attr(node, "alpha", 1.0) != 1.0:
            raise ModelError(f"Gemm {node.name!r}: transA/alpha have no TFLite form")
        if attr(node, "beta", 1.0) != 1.0:
            raise ModelError(f"Gemm {node.name!r}: beta other than 1 has no TFLite form")
        if not attr(node, "transB", 0):
            w = w.T
    else:
        w = w.T  # MatMul weight (K, N) -> (N, K)
    return _unflatten_columns(ctx, node.input[0], w)


def fully_connected(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    w, w_scale = ctx.weight(node.input[1])
    w = fc_weight(ctx, node, w)
    n = w.shape[0]
    scale = np.float32(ctx.grid_of(x.index)[0]) * w_scale.astype(np.float32)
    w_index = ctx.int8_weight(f"{node.input[1]}_tfl", w, np.broadcast_to(w_scale, (n,)))
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 else None
    b_index = ctx.bias(bias or None, n, scale)
    y = ctx.output_act(node, [ctx.shape_of(x)[0], n], False)
    ctx.emit(
        B.FULLY_CONNECTED, [x.index, w_index, b_index], [y], options("FullyConnectedOptions"), 5
    )
