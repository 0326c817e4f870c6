"""Binary and unary elementwise ops: TFLite and ONNX both broadcast as NumPy does, so each is one
ONNX node (plus the fused activation of ADD, SUB, MUL and DIV)."""

from __future__ import annotations

from collections.abc import Callable

from quanta.tflite.read_context import ImportContext, Op

__all__ = ["BINARY", "UNARY"]

Importer = Callable[[ImportContext, Op], None]


def _binary(op_type: str) -> Importer:
    def run(ctx: ImportContext, op: Op) -> None:
        y = op.outputs[0]
        act = op.options.FusedActivationFunction() if op.options is not None else 0
        pre = ctx.pre_activation(y, act)
        ctx.node(op_type, [ctx.name(op.inputs[0]), ctx.name(op.inputs[1])], [pre])
        ctx.activate(pre, y, act, op)

    return run


def _unary(op_type: str) -> Importer:
    def run(ctx: ImportContext, op: Op) -> None:
        ctx.node(op_type, [ctx.name(op.inputs[0])], [ctx.name(op.outputs[0])])

    return run


def _squared_difference(ctx: ImportContext, op: Op) -> None:
    y = ctx.name(op.outputs[0])
    diff = ctx.node("Sub", [ctx.name(op.inputs[0]), ctx.name(op.inputs[1])], [ctx.fresh(y)])
    ctx.node("Mul", [diff, diff], [y])


def _rsqrt(ctx: ImportContext, op: Op) -> None:
    y = ctx.name(op.outputs[0])
    root = ctx.node("Sqrt", [ctx.name(op.inputs[0])], [ctx.fresh(f"{y}_sqrt")])
    ctx.node("Reciprocal", [root], [y])


def _square(ctx: ImportContext, op: Op) -> None:
    x = ctx.name(op.inputs[0])
    ctx.node("Mul", [x, x], [ctx.name(op.outputs[0])])


BINARY: dict[str, Importer] = {
    "ADD": _binary("Add"),
    "SUB": _binary("Sub"),
    "MUL": _binary("Mul"),
    "DIV": _binary("Div"),
    "MAXIMUM": _binary("Max"),
    "MINIMUM": _binary("Min"),
    "POW": _binary("Pow"),
    "SQUARED_DIFFERENCE": _squared_difference,
}

UNARY: dict[str, Importer] = {
    "ABS": _unary("Abs"),
    "NEG": _unary("Neg"),
    "EXP": _unary("Exp"),
    "LOG": _unary("Log"),
    "SQRT": _unary("Sqrt"),
    "RSQRT": _rsqrt,
    "SQUARE": _square,
    "FLOOR": _unary("Floor"),
    "CEIL": _unary("Ceil"),
    "SIN": _unary("Sin"),
    "COS": _unary("Cos"),
}
