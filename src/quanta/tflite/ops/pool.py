"""MaxPool and AveragePool as MAX_POOL_2D / AVERAGE_POOL_2D, on their input's grid."""

from __future__ import annotations

import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Context, attr
from quanta.tflite.ops.layout import window_padding
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def pool(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    batch = ctx.shape_of(x)[0]
    kernel = list(attr(node, "kernel_shape", []))  # type: ignore[call-overload]
    strides = list(attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
    if attr(node, "ceil_mode", 0):
        raise ModelError(f"{node.op_type} {node.name!r}: ceil_mode has no TFLite form")
    padding, x = window_padding(ctx, node, x, kernel)
    y = ctx.output_act(node, ctx.nhwc_shape(node.output[0], batch), True)
    (kh, kw), (sh, sw) = kernel, strides
    builder = options(
        "Pool2DOptions", Padding=padding, StrideW=sw, StrideH=sh, FilterWidth=kw, FilterHeight=kh
    )
    code = B.MAX_POOL_2D if node.op_type == "MaxPool" else B.AVERAGE_POOL_2D
    ctx.emit(code, [x.index], [y], builder, 2)
