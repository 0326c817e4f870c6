"""Add and Mul of two int8 tensors as ADD / MUL: TFLite rescales each input to the output grid
itself, so the inputs keep their own grids (an int8 constant operand keeps its own too)."""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Context
from quanta.tflite.writer import options

B = tflite.BuiltinOperator

# ONNX op type -> (TFLite operator, its options table)
_OPERATORS = {"Add": (B.ADD, "AddOptions"), "Mul": (B.MUL, "MulOptions")}


def elementwise(ctx: Context, node: onnx.NodeProto) -> None:
    """Add or Mul of two int8 tensors; one may be a single value (an int8 constant such as the
    3 of a rewritten HardSwish), which broadcasts in either layout."""
    a, b = ctx.act_of(node.input[0]), ctx.act_of(node.input[1])
    single_a, single_b = (int(np.prod(ctx.shape_of(t))) == 1 for t in (a, b))
    if a.nhwc != b.nhwc and not (single_a or single_b):
        raise ModelError(f"{node.op_type} {node.name!r}: inputs in different layouts")
    lead = b if single_a and not single_b else a
    y = ctx.output_act(node, ctx.shape_of(lead), lead.nhwc)
    code, table = _OPERATORS[node.op_type]
    ctx.emit(code, [a.index, b.index], [y], options(table), 2)
