"""Activations and the softmax head: RELU, RELU6, RELU_N1_TO_1, LOGISTIC, TANH, HARD_SWISH,
LEAKY_RELU, PRELU, SOFTMAX (with its ``beta``) and LOG_SOFTMAX, each over the last axis."""

from __future__ import annotations

import numpy as np

from quanta.tflite.read_context import ImportContext, Op

__all__ = ["ACTIVATIONS"]


def _io(ctx: ImportContext, op: Op) -> tuple[str, str]:
    return ctx.name(op.inputs[0]), ctx.name(op.outputs[0])


def relu(ctx: ImportContext, op: Op) -> None:
    ctx.node("Relu", *[[n] for n in _io(ctx, op)])


def relu6(ctx: ImportContext, op: Op) -> None:
    ctx.clip(*_io(ctx, op), 0.0, 6.0)


def relu_n1_to_1(ctx: ImportContext, op: Op) -> None:
    ctx.clip(*_io(ctx, op), -1.0, 1.0)


def logistic(ctx: ImportContext, op: Op) -> None:
    ctx.node("Sigmoid", *[[n] for n in _io(ctx, op)])


def tanh(ctx: ImportContext, op: Op) -> None:
    ctx.node("Tanh", *[[n] for n in _io(ctx, op)])


def hard_swish(ctx: ImportContext, op: Op) -> None:
    ctx.node("HardSwish", *[[n] for n in _io(ctx, op)])


def leaky_relu(ctx: ImportContext, op: Op) -> None:
    x, y = _io(ctx, op)
    ctx.node("LeakyRelu", [x], [y], alpha=float(op.options.Alpha()))


def prelu(ctx: ImportContext, op: Op) -> None:
    x, y = _io(ctx, op)
    ctx.node("PRelu", [x, ctx.name(op.inputs[1])], [y])


def _softmax(ctx: ImportContext, op: Op, op_type: str) -> None:
    x, y = _io(ctx, op)
    beta = float(op.options.Beta()) if op.options is not None else 1.0
    if beta != 1.0:
        scale = ctx.constant(f"{y}_beta", np.array(beta, np.float32))
        x = ctx.node("Mul", [x, scale], [ctx.fresh(f"{y}_logits")])
    ctx.node(op_type, [x], [y], axis=-1)


def softmax(ctx: ImportContext, op: Op) -> None:
    _softmax(ctx, op, "Softmax")


def log_softmax(ctx: ImportContext, op: Op) -> None:
    _softmax(ctx, op, "LogSoftmax")


ACTIVATIONS = {
    "RELU": relu,
    "RELU6": relu6,
    "RELU_N1_TO_1": relu_n1_to_1,
    "LOGISTIC": logistic,
    "TANH": tanh,
    "HARD_SWISH": hard_swish,
    "LEAKY_RELU": leaky_relu,
    "PRELU": prelu,
    "SOFTMAX": softmax,
    "LOG_SOFTMAX": log_softmax,
}
