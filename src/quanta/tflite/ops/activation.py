"""LeakyRelu as LEAKY_RELU on int8: input and output keep their own grids (TFLite requantizes
the two sides with two multipliers itself)."""

from __future__ import annotations

import onnx
import tflite

from quanta.tflite.context import Context, attr
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def leaky_relu(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    y = ctx.output_act(node, ctx.shape_of(x), x.nhwc)
    alpha = float(attr(node, "alpha", 0.01))  # type: ignore[arg-type]
    ctx.emit(B.LEAKY_RELU, [x.index], [y], options("LeakyReluOptions", Alpha=alpha), 2)
