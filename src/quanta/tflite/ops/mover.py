"""Pad and Resize on int8, as PAD and RESIZE_*: TFLite's int8 kernels keep the input's grid (PAD
fills with its zero point, real 0), so the output is written on that grid and a QUANTIZE onto
the QuantizeLinear's grid after it follows only where the two differ."""

from __future__ import annotations

import onnx
import tflite

from quanta.tflite.context import Act, Context
from quanta.tflite.ops.float_ops import pad_paddings, resize_operator
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def _bind_output(ctx: Context, node: onnx.NodeProto, y: Act) -> None:
    """``y`` (on its input's grid) stands for the node's output, requantized onto the grid of
    the QuantizeLinear after it."""
    users = ctx.index.consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type == "QuantizeLinear":
        q = users[0]
        ctx.bind(q.output[0], Act(ctx.requantized(y, ctx.grid(q), q.output[0]), y.nhwc))
    else:
        ctx.acts[node.output[0]] = y


def pad(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    paddings, shape = pad_paddings(ctx, node, x)
    y = ctx.int8(f"{node.output[0]}_padded", shape, ctx.grid_of(x.index))
    p_index = ctx.constant(f"{node.name}_paddings", paddings)
    ctx.emit(B.PAD, [x.index, p_index], [y], options("PadOptions"), 2)
    _bind_output(ctx, node, Act(y, x.nhwc))


def resize(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    code, shape, extra, builder, version = resize_operator(ctx, node, x)
    y = ctx.int8(f"{node.output[0]}_resized", shape, ctx.grid_of(x.index))
    ctx.emit(code, [x.index, *extra], [y], builder, max(version, 2))
    _bind_output(ctx, node, Act(y, True))
