"""MaxPool and AveragePool as MAX_POOL_2D / AVERAGE_POOL_2D, on their input's grid.

TFLite's int8 pooling kernels do not rescale: they take the max or the rounded mean of the input's
int8 values and write them as they are, whatever grid the output tensor names. quanta's QDQ model
may give an AveragePool's output its own grid (ONNX Runtime's QLinearAveragePool rescales), so
there the pool writes a tensor on its input's grid and a QUANTIZE moves it onto the output's.
"""

from __future__ import annotations

import onnx
import tflite

from quanta.tflite.context import Context, attr
from quanta.tflite.ops.layout import window_padding
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def pool(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    batch = ctx.shape_of(x)[0]
    kernel = list(attr(node, "kernel_shape", []))  # type: ignore[call-overload]
    strides = list(attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
    padding, x = window_padding(ctx, node, x, kernel)
    shape = ctx.nhwc_shape(node.output[0], batch)
    y = ctx.output_act(node, shape, True)
    (kh, kw), (sh, sw) = kernel, strides
    builder = options(
        "Pool2DOptions", Padding=padding, StrideW=sw, StrideH=sh, FilterWidth=kw, FilterHeight=kh
    )
    code = B.MAX_POOL_2D if node.op_type == "MaxPool" else B.AVERAGE_POOL_2D
    grid = ctx.grid_of(x.index)
    if ctx.grid_of(y) == grid:
        ctx.emit(code, [x.index], [y], builder, 2)
        return
    pooled = ctx.int8(f"{node.output[0]}_pooled", shape, grid)
    ctx.emit(code, [x.index], [pooled], builder, 2)
    ctx.emit(B.QUANTIZE, [pooled], [y], None, 2)
