"""CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV as ONNX Conv / ConvTranspose between Transposes.

Weights are transposed once to ONNX's layout: OHWI -> OIHW; a depthwise 1HW(C*M) kernel ->
(C*M)1HW with ``group = C``; a transposed convolution's OHWI -> IOHW.
"""

from __future__ import annotations

import numpy as np

from quanta.tflite.read_context import ImportContext, Op
from quanta.tflite.read_ops.window import pads

__all__ = ["conv_2d", "depthwise_conv_2d", "transpose_conv"]


def _conv(ctx: ImportContext, op: Op, w: np.ndarray, group: int) -> None:
    o = op.options
    x, y = op.inputs[0], op.outputs[0]
    kernel, strides = list(w.shape[2:]), [o.StrideH(), o.StrideW()]
    dilations = [o.DilationHFactor(), o.DilationWFactor()]
    padding = pads(o.Padding(), ctx.shape(x)[1:3], ctx.shape(y)[1:3], kernel, strides, dilations)
    inputs = [ctx.to_nchw(ctx.name(x)), ctx.constant(f"{ctx.name(y)}_weight", w)]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(ctx.constant(f"{ctx.name(y)}_bias", ctx.weight(op, 2)))
    out = ctx.node(
        "Conv", inputs, [ctx.fresh(f"{ctx.name(y)}_nchw")],
        kernel_shape=kernel, strides=strides, dilations=dilations, pads=padding, group=group,
    )  # fmt: skip
    act = o.FusedActivationFunction()
    pre = ctx.pre_activation(y, act)
    ctx.from_nchw(out, pre)
    ctx.activate(pre, y, act, op)


def conv_2d(ctx: ImportContext, op: Op) -> None:
    w = ctx.weight(op, 1)  # (O, KH, KW, I)
    _conv(ctx, op, w.transpose(0, 3, 1, 2), 1)  # (O, I, KH, KW)


def depthwise_conv_2d(ctx: ImportContext, op: Op) -> None:
    w = ctx.weight(op, 1)  # (1, KH, KW, C*M)
    channels = ctx.shape(op.inputs[0])[3]
    _conv(ctx, op, w[0].transpose(2, 0, 1)[:, None], channels)  # (C*M, 1, KH, KW)


def transpose_conv(ctx: ImportContext, op: Op) -> None:
    # inputs: output_shape, weights (O, KH, KW, I), input, optional bias
    o = op.options
    w = ctx.weight(op, 1)
    x, y = op.inputs[2], op.outputs[0]
    kernel, strides = list(w.shape[1:3]), [o.StrideH(), o.StrideW()]
    # the transposed convolution pads its output: the same SAME arithmetic, from out to in
    padding = pads(o.Padding(), ctx.shape(y)[1:3], ctx.shape(x)[1:3], kernel, strides)
    inputs = [
        ctx.to_nchw(ctx.name(x)),
        ctx.constant(f"{ctx.name(y)}_weight", w.transpose(3, 0, 1, 2)),  # (I, O, KH, KW)
    ]
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        inputs.append(ctx.constant(f"{ctx.name(y)}_bias", ctx.weight(op, 3)))
    out = ctx.node(
        "ConvTranspose", inputs, [ctx.fresh(f"{ctx.name(y)}_nchw")],
        kernel_shape=kernel, strides=strides, pads=padding,
    )  # fmt: skip
    act = o.FusedActivationFunction() if hasattr(o, "FusedActivationFunction") else 0
    pre = ctx.pre_activation(y, act)
    ctx.from_nchw(out, pre)
    ctx.activate(pre, y, act, op)
