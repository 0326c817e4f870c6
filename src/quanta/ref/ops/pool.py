"""Pooling on integers.

- MaxPool: the largest integer of each window; the grid is unchanged (max commutes with the
  monotonic map from integers to reals), padding never wins.
- GlobalAveragePool / AveragePool: the window's int32 sum of ``q - Z``, whose unit is
  ``s_in / count``; the QuantizeLinear after it divides by requantizing with
  ``M = s_in / (count * s_out)``. (ONNX Runtime's QLinear(Global)AveragePool divides in float.)
"""

from __future__ import annotations

import numpy as np

from quanta.ref.ops import (
    NotInteger,
    OpContext,
    accumulator,
    per_tensor,
    register,
    spatial_attrs,
    windows,
)
from quanta.ref.tensor import QTensor


@register("MaxPool")
def max_pool(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = per_tensor(inputs[0], "MaxPool input")
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise NotInteger("MaxPool's Indices output")
    kernel = list(ctx.attrs["kernel_shape"])
    strides, pads, dilations = spatial_attrs(ctx, kernel)
    lowest = np.iinfo(np.int64).min
    win = windows(
        x.q, kernel, strides, pads, dilations, fill=lowest,
        ceil_mode=bool(ctx.attrs.get("ceil_mode", 0)),
    )  # fmt: skip
    return [QTensor(win.max(axis=(4, 5)), x.qp)]


@register("GlobalAveragePool")
def global_average_pool(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = per_tensor(inputs[0], "GlobalAveragePool input")
    axes = tuple(range(2, x.q.ndim))
    count = int(np.prod([x.q.shape[a] for a in axes]))
    acc = x.centered().sum(axis=axes, keepdims=True)
    return [accumulator(acc, np.float32(x.qp.scale) / np.float32(count), None)]


@register("AveragePool")
def average_pool(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = per_tensor(inputs[0], "AveragePool input")
    kernel = list(ctx.attrs["kernel_shape"])
    strides, pads, dilations = spatial_attrs(ctx, kernel)
    if any(pads) and not ctx.attrs.get("count_include_pad", 0):
        # the divisor would change at the borders: no single output unit
        raise NotInteger("AveragePool over padding without count_include_pad")
    if ctx.attrs.get("ceil_mode", 0):
        raise NotInteger("AveragePool with ceil_mode")
    win = windows(x.centered(), kernel, strides, pads, dilations, fill=0)
    count = int(np.prod(kernel))
    acc = win.sum(axis=(4, 5))
    return [accumulator(acc, np.float32(x.qp.scale) / np.float32(count), None)]
