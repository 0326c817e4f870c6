"""Value movers: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Identity, Gather, Slice, Split.

They rearrange integers without arithmetic and keep the input's grid (quanta gives their output
the same scale and zero point as the input, which is what lets a runtime skip requantizing).
"""

from __future__ import annotations

import numpy as np

from quanta.ref.ops import NotInteger, OpContext, register
from quanta.ref.tensor import QTensor


def _input(inputs: list[QTensor | None], op: str) -> QTensor:
    x = inputs[0]
    if x is None:
        raise NotInteger(f"{op} input is not quantized")
    if x.qp.axis is not None:
        raise NotInteger(f"{op} of a per-axis tensor")
    return x


def _required(ctx: OpContext, position: int) -> np.ndarray:
    value = ctx.constant(position)
    if value is None:
        raise NotInteger(f"{ctx.node.op_type} input {position} is not a constant")
    return value


def _axes(ctx: OpContext, position: int) -> list[int] | None:
    if "axes" in ctx.attrs:
        return [int(a) for a in ctx.attrs["axes"]]
    value = ctx.constant(position)
    return None if value is None else [int(a) for a in value.reshape(-1)]


@register("Identity")
def identity(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    return [_input(inputs, "Identity")]


@register("Reshape")
def reshape(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Reshape")
    shape = [int(s) for s in _required(ctx, 1)]
    if not ctx.attrs.get("allowzero", 0):
        shape = [x.q.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [QTensor(x.q.reshape(shape), x.qp)]


@register("Flatten")
def flatten(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Flatten")
    axis = int(ctx.attrs.get("axis", 1)) % max(x.q.ndim, 1)
    lead = int(np.prod(x.q.shape[:axis]))
    return [QTensor(x.q.reshape(lead, -1), x.qp)]


@register("Transpose")
def transpose(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Transpose")
    perm = ctx.attrs.get("perm")
    return [QTensor(np.transpose(x.q, perm), x.qp)]


@register("Squeeze")
def squeeze(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Squeeze")
    axes = _axes(ctx, 1)
    q = np.squeeze(x.q) if axes is None else np.squeeze(x.q, axis=tuple(axes))
    return [QTensor(q, x.qp)]


@register("Unsqueeze")
def unsqueeze(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Unsqueeze")
    axes = _axes(ctx, 1)
    if axes is None:
        raise NotInteger("Unsqueeze without constant axes")
    rank = x.q.ndim + len(axes)
    return [QTensor(np.expand_dims(x.q, tuple(a % rank for a in axes)), x.qp)]


@register("Gather")
def gather(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Gather")
    indices = _required(ctx, 1).astype(np.int64)
    axis = int(ctx.attrs.get("axis", 0))
    indices = np.where(indices < 0, indices + x.q.shape[axis], indices)
    return [QTensor(np.take(x.q, indices, axis=axis), x.qp)]


@register("Slice")
def slice_(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Slice")
    starts, ends = _required(ctx, 1), _required(ctx, 2)
    given_axes, given_steps = ctx.constant(3), ctx.constant(4)
    axes = (
        list(range(len(starts))) if given_axes is None else [int(a) % x.q.ndim for a in given_axes]
    )
    steps = [1] * len(starts) if given_steps is None else [int(s) for s in given_steps]
    index = [slice(None)] * x.q.ndim
    # ONNX clamps starts and ends as Python's slices do (a negative index counts from the end;
    # with a negative step an end before the first element stops after it), so the slice is
    # Python's own: its .indices() would turn such an end into -1, which reads as "the last"
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        index[axis] = slice(int(start), int(np.clip(end, -(2**62), 2**62)), step)
    return [QTensor(x.q[tuple(index)], x.qp)]


@register("Split")
def split(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _input(inputs, "Split")
    axis = int(ctx.attrs.get("axis", 0))
    sizes = ctx.constant(1)
    if sizes is None and "split" in ctx.attrs:
        sizes = np.asarray(ctx.attrs["split"])
    n = len(ctx.node.output)
    if sizes is None:
        size = x.q.shape[axis]
        chunk = -(-size // n)
        sizes = np.array([min(chunk, size - i * chunk) for i in range(n)])
    cuts = np.cumsum(sizes)[:-1]
    return [QTensor(part, x.qp) for part in np.split(x.q, cuts, axis=axis)]
