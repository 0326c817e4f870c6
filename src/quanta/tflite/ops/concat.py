"""Concat as CONCATENATION. TFLite's int8 kernel needs every input on the output's grid, so an
input on another grid (quanta's QDQ Concat lets each keep its own) is requantized first."""

from __future__ import annotations

import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Context
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def concat(ctx: Context, node: onnx.NodeProto) -> None:
    acts = [ctx.act_of(name) for name in node.input]
    if len({a.nhwc for a in acts}) != 1:
        raise ModelError(f"Concat {node.name!r}: inputs in different layouts")
    shapes = [ctx.shape_of(a) for a in acts]
    axis = ctx.tflite_axis(node, len(shapes[0]), acts[0].nhwc)
    shape = list(shapes[0])
    shape[axis] = sum(sh[axis] for sh in shapes)
    y = ctx.output_act(node, shape, acts[0].nhwc)
    grid = ctx.grid_of(y)
    inputs = [ctx.requantized(a, grid, f"{node.name}_in{i}") for i, a in enumerate(acts)]
    ctx.emit(B.CONCATENATION, inputs, [y], options("ConcatenationOptions", Axis=axis))
