"""MEAN, SUM, REDUCE_MAX and REDUCE_MIN over constant axes.

A MEAN over the spatial axes (1, 2) of an NHWC tensor is ONNX's GlobalAveragePool (between
Transposes), the spelling with an int8 kernel; any other becomes ReduceMean.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quanta.errors import ModelError
from quanta.tflite.read_context import ImportContext, Op

__all__ = ["REDUCTIONS"]


def _axes(ctx: ImportContext, op: Op) -> list[int]:
    value = ctx.const(op.inputs[1])
    if value is None:
        raise ModelError(f"TFLite {op.name} (operator {op.index}): the axes are not a constant")
    rank = len(ctx.shape(op.inputs[0]))
    return sorted({int(a) % rank for a in value.reshape(-1)})


def _keep(op: Op) -> int:
    return int(bool(op.options.KeepDims())) if op.options is not None else 0


def mean(ctx: ImportContext, op: Op) -> None:
    axes, keep = _axes(ctx, op), _keep(op)
    x, y = ctx.name(op.inputs[0]), ctx.name(op.outputs[0])
    if len(ctx.shape(op.inputs[0])) == 4 and axes == [1, 2]:
        pooled = ctx.node("GlobalAveragePool", [ctx.to_nchw(x)], [ctx.fresh(f"{y}_nchw")])
        if keep:
            ctx.from_nchw(pooled, y)
        else:
            ctx.node("Flatten", [pooled], [y], axis=1)  # (N, C, 1, 1) -> (N, C)
        return
    ctx.node("ReduceMean", [x], [y], axes=axes, keepdims=keep)


def _reduce(op_type: str, axes_input: bool) -> Callable[[ImportContext, Op], None]:
    def run(ctx: ImportContext, op: Op) -> None:
        axes, keep = _axes(ctx, op), _keep(op)
        x, y = ctx.name(op.inputs[0]), ctx.name(op.outputs[0])
        if axes_input:  # NOTE: ReduceSum takes its axes as an input from opset 13 on
            ctx.node(op_type, [x, ctx.constant(f"{y}_axes", np.array(axes, np.int64))], [y],
                     keepdims=keep)  # fmt: skip
        else:
            ctx.node(op_type, [x], [y], axes=axes, keepdims=keep)

    return run


REDUCTIONS = {
    "MEAN": mean,
    "SUM": _reduce("ReduceSum", True),
    "REDUCE_MAX": _reduce("ReduceMax", False),
    "REDUCE_MIN": _reduce("ReduceMin", False),
}
