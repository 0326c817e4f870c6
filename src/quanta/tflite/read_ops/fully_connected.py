"""FULLY_CONNECTED as ONNX Gemm (``transB=1``: TFLite keeps the weight as (out, in), as PyTorch).

The input is flattened to (-1, in) first, as TFLite does; ``keep_num_dims`` reshapes the result
back to the output tensor's shape.
"""

from __future__ import annotations

import numpy as np

from quanta.tflite.read_context import ImportContext, Op

__all__ = ["fully_connected"]


def fully_connected(ctx: ImportContext, op: Op) -> None:
    x, y = op.inputs[0], op.outputs[0]
    w = ctx.weight(op, 1)  # (out, in)
    out_features, in_features = w.shape
    name = ctx.name(x)
    if len(ctx.shape(x)) != 2:
        shape = ctx.constant(f"{name}_2d_shape", np.array([-1, in_features], np.int64))
        name = ctx.node("Reshape", [name, shape], [ctx.fresh(f"{name}_2d")])  # (N, in)
    bias = (
        ctx.weight(op, 2)
        if len(op.inputs) > 2 and op.inputs[2] >= 0
        else np.zeros(out_features, np.float32)
    )
    inputs = [
        name,
        ctx.constant(f"{ctx.name(y)}_weight", w),
        ctx.constant(f"{ctx.name(y)}_bias", bias),
    ]
    act = op.options.FusedActivationFunction() if op.options is not None else 0
    pre = ctx.pre_activation(y, act)
    reshape = len(ctx.shape(y)) != 2
    gemm_out = ctx.fresh(f"{ctx.name(y)}_2d") if reshape else pre
    ctx.node("Gemm", inputs, [gemm_out], transB=1)  # (N, out)
    if reshape:
        shape = ctx.constant(f"{ctx.name(y)}_shape", np.array(ctx.reshape_target(y), np.int64))
        ctx.node("Reshape", [gemm_out, shape], [pre])
    ctx.activate(pre, y, act, op)
