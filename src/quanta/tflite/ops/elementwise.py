"""Add and Mul of two int8 tensors as ADD / MUL: TFLite rescales each input to the output grid
itself, so the inputs keep their own grids."""

from __future__ import annotations

import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Context
from quanta.tflite.writer import options

B = tflite.BuiltinOperator

# ONNX op type -> (TFLite operator, its options table)
_OPERATORS = {"Add": (B.ADD, "AddOptions"), "Mul": (B.MUL, "MulOptions")}


def elementwise(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.act_of(node.input[0]), ctx.act_of(node.input[1])
    if a.nhwc != b.nhwc:
        raise ModelError(f"{node.op_type} {node.name!r}: inputs in different layouts")
    y = ctx.output_act(node, ctx.shape_of(a), a.nhwc)
    code, table = _OPERATORS[node.op_type]
    ctx.emit(code, [a.index, b.index], [y], options(table), 2)
