"""Ops that move or reshape values: RESHAPE, SQUEEZE, EXPAND_DIMS, TRANSPOSE, CONCATENATION,
PAD / PADV2 / MIRROR_PAD, SLICE, STRIDED_SLICE, SPLIT, SPLIT_V, PACK, GATHER.

A reshaping op becomes a Reshape to a constant: its output tensor's shape, or its
``shape_signature`` when that has one dynamic dimension (-1; TensorFlow's converter writes a
dynamic batch so, and computes Keras's Flatten target with SHAPE -> STRIDED_SLICE -> PACK,
which the reader then leaves out as dead). Slices are computed here into plain ONNX Slice
starts and ends.
"""

from __future__ import annotations

import numpy as np

from quanta.errors import ModelError
from quanta.tflite.read_context import ImportContext, Op

__all__ = ["SHAPE_OPS"]


def _i64(ctx: ImportContext, base: str, values: list[int] | np.ndarray) -> str:
    return ctx.constant(base, np.asarray(values, np.int64))


def _const(ctx: ImportContext, op: Op, position: int) -> np.ndarray:
    value = ctx.const(op.inputs[position]) if position < len(op.inputs) else None
    if value is None:
        raise ModelError(
            f"TFLite {op.name} (operator {op.index}): input {position} is not a constant; "
            "quanta imports it only with a constant there"
        )
    return value


def reshape(ctx: ImportContext, op: Op) -> None:
    y = ctx.name(op.outputs[0])
    shape = _i64(ctx, f"{y}_shape", ctx.reshape_target(op.outputs[0]))
    ctx.node("Reshape", [ctx.name(op.inputs[0]), shape], [y])


def transpose(ctx: ImportContext, op: Op) -> None:
    perm = [int(p) for p in _const(ctx, op, 1)]
    ctx.node("Transpose", [ctx.name(op.inputs[0])], [ctx.name(op.outputs[0])], perm=perm)


def concatenation(ctx: ImportContext, op: Op) -> None:
    # NOTE: LiteRT's float CONCATENATION ignores its fused activation (measured: RELU6 there
    # leaves negative values), so the import does too: it computes what LiteRT computes
    y = ctx.name(op.outputs[0])
    ctx.node("Concat", [ctx.name(i) for i in op.inputs], [y], axis=int(op.options.Axis()))


def pad(ctx: ImportContext, op: Op) -> None:
    paddings = _const(ctx, op, 1).astype(np.int64)  # (rank, 2): before, after
    y = ctx.name(op.outputs[0])
    inputs = [ctx.name(op.inputs[0]), _i64(ctx, f"{y}_pads", [*paddings[:, 0], *paddings[:, 1]])]
    if op.name == "PADV2" and len(op.inputs) > 2:
        inputs.append(ctx.name(op.inputs[2]))
    mode = "constant"
    if op.name == "MIRROR_PAD":  # tflite.MirrorPadMode: REFLECT = 0, SYMMETRIC = 1
        if op.options.Mode() != 0:
            raise ModelError(
                f"TFLite MIRROR_PAD (operator {op.index}) in SYMMETRIC mode has no ONNX Pad mode"
            )
        mode = "reflect"
    ctx.node("Pad", inputs, [y], mode=mode)


def _slice(ctx: ImportContext, x: str, y: str, starts: list[int], ends: list[int],
           steps: list[int]) -> str:  # fmt: skip
    axes = list(range(len(starts)))
    return ctx.node(
        "Slice",
        [x, _i64(ctx, f"{y}_starts", starts), _i64(ctx, f"{y}_ends", ends),
         _i64(ctx, f"{y}_axes", axes), _i64(ctx, f"{y}_steps", steps)],
        [y],
    )  # fmt: skip


def slice_(ctx: ImportContext, op: Op) -> None:
    begin = [int(b) for b in _const(ctx, op, 1)]
    size = [int(s) for s in _const(ctx, op, 2)]
    shape, dynamic = ctx.shape(op.inputs[0]), ctx.dynamic(op.inputs[0])
    big = np.iinfo(np.int64).max
    ends = []
    for a, (b, s) in enumerate(zip(begin, size, strict=True)):
        if dynamic[a] and not (b == 0 and s == -1):
            ctx.batch_fixed = True  # NOTE: a part of a dynamic axis reads its example size
        ends.append((big if dynamic[a] else shape[a]) if s == -1 else b + s)
    y = ctx.name(op.outputs[0])
    _slice(ctx, ctx.name(op.inputs[0]), y, begin, ends, [1] * len(begin))


def strided_slice(ctx: ImportContext, op: Op) -> None:
    o = op.options
    if o.EllipsisMask() or o.NewAxisMask():
        raise ModelError(
            f"TFLite STRIDED_SLICE (operator {op.index}) with an ellipsis or new-axis mask "
            "has no ONNX import in quanta"
        )
    begin = [int(b) for b in _const(ctx, op, 1)]
    end = [int(e) for e in _const(ctx, op, 2)]
    steps = [int(s) for s in _const(ctx, op, 3)]
    shape = ctx.shape(op.inputs[0])
    dynamic = ctx.dynamic(op.inputs[0])
    big = np.iinfo(np.int64).max
    starts, ends = [], []
    for a in range(len(begin)):
        forward = steps[a] > 0
        start = (0 if forward else -1) if o.BeginMask() >> a & 1 else begin[a]
        stop = (big if forward else -big) if o.EndMask() >> a & 1 else end[a]
        if dynamic[a] and not (o.BeginMask() >> a & 1 and o.EndMask() >> a & 1):
            ctx.batch_fixed = True  # NOTE: a slice of a dynamic axis reads its example size
        if o.ShrinkAxisMask() >> a & 1:
            start = begin[a] % shape[a] if shape[a] else begin[a]
            stop, steps[a] = start + 1, 1
        starts.append(start)
        ends.append(stop)
    y = ctx.name(op.outputs[0])
    sliced = _slice(ctx, ctx.name(op.inputs[0]), ctx.fresh(f"{y}_slice"), starts, ends, steps)
    target = ctx.reshape_target(op.outputs[0])
    ctx.node("Reshape", [sliced, _i64(ctx, f"{y}_shape", target)], [y])


def _split(ctx: ImportContext, op: Op, x: int, axis: int, sizes: list[int]) -> None:
    axis = axis % len(ctx.shape(x))
    if ctx.dynamic(x)[axis]:
        ctx.batch_fixed = True
    y = ctx.name(op.outputs[0])
    ctx.node(
        "Split", [ctx.name(x), _i64(ctx, f"{y}_split", sizes)],
        [ctx.name(o) for o in op.outputs], axis=axis,
    )  # fmt: skip


def split(ctx: ImportContext, op: Op) -> None:
    axis = int(_const(ctx, op, 0).reshape(-1)[0])  # inputs: axis, value
    x = op.inputs[1]
    _split(ctx, op, x, axis, [ctx.shape(o)[axis] for o in op.outputs])


def split_v(ctx: ImportContext, op: Op) -> None:
    axis = int(_const(ctx, op, 2).reshape(-1)[0])  # inputs: value, size_splits, axis
    x = op.inputs[0]
    _split(ctx, op, x, axis, [ctx.shape(o)[axis] for o in op.outputs])


def pack(ctx: ImportContext, op: Op) -> None:
    axis = int(op.options.Axis())
    y = ctx.name(op.outputs[0])
    rank = len(ctx.shape(op.outputs[0]))
    axes = _i64(ctx, f"{y}_axes", [axis % rank])
    parts = [
        ctx.node("Unsqueeze", [ctx.name(i), axes], [ctx.fresh(f"{y}_part")]) for i in op.inputs
    ]
    ctx.node("Concat", parts, [y], axis=axis % rank)


def gather(ctx: ImportContext, op: Op) -> None:
    axis = int(op.options.Axis()) if op.options is not None else 0
    ctx.node(
        "Gather", [ctx.name(op.inputs[0]), ctx.name(op.inputs[1])], [ctx.name(op.outputs[0])],
        axis=axis,
    )  # fmt: skip


SHAPE_OPS = {
    "RESHAPE": reshape,
    "SQUEEZE": reshape,
    "EXPAND_DIMS": reshape,
    "TRANSPOSE": transpose,
    "CONCATENATION": concatenation,
    "PAD": pad,
    "PADV2": pad,
    "MIRROR_PAD": pad,
    "SLICE": slice_,
    "STRIDED_SLICE": strided_slice,
    "SPLIT": split,
    "SPLIT_V": split_v,
    "PACK": pack,
    "GATHER": gather,
}
