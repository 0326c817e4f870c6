"""AVERAGE_POOL_2D and MAX_POOL_2D as ONNX AveragePool / MaxPool between Transposes.

TFLite's average pool divides by the number of pixels inside the image, never the padding:
ONNX's ``count_include_pad=0`` (the default).
"""

from __future__ import annotations

from quanta.tflite.read_context import ImportContext, Op
from quanta.tflite.read_ops.window import pads

__all__ = ["average_pool_2d", "max_pool_2d"]


def _pool(ctx: ImportContext, op: Op, op_type: str) -> None:
    o = op.options
    x, y = op.inputs[0], op.outputs[0]
    kernel, strides = [o.FilterHeight(), o.FilterWidth()], [o.StrideH(), o.StrideW()]
    padding = pads(o.Padding(), ctx.shape(x)[1:3], ctx.shape(y)[1:3], kernel, strides)
    out = ctx.node(
        op_type, [ctx.to_nchw(ctx.name(x))], [ctx.fresh(f"{ctx.name(y)}_nchw")],
        kernel_shape=kernel, strides=strides, pads=padding,
    )  # fmt: skip
    act = o.FusedActivationFunction()
    pre = ctx.pre_activation(y, act)
    ctx.from_nchw(out, pre)
    ctx.activate(pre, y, act, op)


def average_pool_2d(ctx: ImportContext, op: Op) -> None:
    _pool(ctx, op, "AveragePool")


def max_pool_2d(ctx: ImportContext, op: Op) -> None:
    _pool(ctx, op, "MaxPool")
