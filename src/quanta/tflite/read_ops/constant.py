"""DEQUANTIZE of a constant (float16 weights, or int8 weights with their scale), folded at import
into a float32 constant: the ONNX model holds the float32 weights that LiteRT computes with."""

from __future__ import annotations

import numpy as np

from quanta.errors import ModelError
from quanta.tflite.read_context import ImportContext, Op

__all__ = ["dequantize"]


def dequantize(ctx: ImportContext, op: Op) -> None:
    x, y = op.inputs[0], op.outputs[0]
    value = ctx.const(x)
    if value is None:
        raise ModelError(
            f"TFLite DEQUANTIZE (operator {op.index}) reads an activation; the TFLite model is "
            "already quantized; pass the float model"
        )
    t = ctx.tensors[x]
    if t.scale is not None and len(t.scale):
        # r = S * (q - Z), per tensor or along the quantized dimension
        shape = [1] * value.ndim
        if len(t.scale) > 1:
            shape[t.quantized_dimension] = len(t.scale)
        zero_point = np.asarray(t.zero_point if t.zero_point is not None else [0], np.float32)
        zp = zero_point.reshape(shape) if len(zero_point) > 1 else zero_point[0]
        value = (value.astype(np.float32) - zp) * t.scale.reshape(shape)
    ctx.consts[y] = value.astype(np.float32)
