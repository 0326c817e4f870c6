"""Layout-aware statistics for 4-D tensors, for batches that need no histogram sample.

ONNX Runtime (optimization level ``all``) keeps a CNN's 4-D activations in NCHWc blocks. A
``ReduceMin``/``ReduceMax``/``ReduceSum`` or a ``Reshape`` is not layout-aware, so each one
observed costs a copy back to NCHW (``ReorderOutput``) before it is even read. Pooling ops are
layout-aware, so per observed 4-D tensor ``t`` this module asks only for:

- ``GlobalMaxPool(t)`` (N, C, 1, 1): the batch's maximum is its largest value;
- ``ReduceMin(t)``, unless ``t`` is non-negative by construction (a Relu, or a Clip whose lower
  bound is >= 0): every range includes 0, so such a tensor's minimum is reported as 0;
- ``GlobalAveragePool(t)`` (N, C, 1, 1) only where this batch's channel means are asked for
  (the per-channel means give bias correction's channel sums where the channel axis is 1) or
  where the caller has no other NaN check (``finiteness``): a NaN or Inf anywhere makes a mean
  non-finite. ``GlobalMaxPool`` alone is no NaN check: ONNX Runtime's blocked kernel skips a
  NaN, and may then report a smaller maximum (see ``quanta.runtime.statistics``).

The value count is the (N, C) of the pools times the height and width, known from the model's
shapes (a ``Shape`` node would cost the copy to NCHW as well).

No sample is taken (a strided sample of the flattened tensor needs NCHW order): the caller
histograms its sampled batches from ``quanta.runtime.statistics``' full graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

__all__ = ["PooledSummary", "pooled_nodes"]


def pooled_nodes(
    name: str,
    prefix: str,
    out: Callable[[str, int], None],
    *,
    extremes: bool,
    nonnegative: bool,
    means: bool,
    step: int = 0,
) -> list[onnx.NodeProto]:
    """The nodes for tensor ``name`` (``extremes``: its max and, unless ``nonnegative``, its
    min; ``means``: its channel means; ``step``: a sample of every ``step``-th row and column,
    all channels, and its sum); ``out(name, elem_type)`` declares each graph output."""
    nodes = []
    if step:
        nodes.append(helper.make_node("MaxPool", [name], [f"{prefix}_sample"],
                                      kernel_shape=[1, 1], strides=[step, step]))  # fmt: skip
        nodes.append(helper.make_node("ReduceSum", [f"{prefix}_sample"], [f"{prefix}_ssum"],
                                      keepdims=0))  # fmt: skip
        out(f"{prefix}_sample", TensorProto.FLOAT)
        out(f"{prefix}_ssum", TensorProto.FLOAT)
    if means:
        nodes.append(helper.make_node("GlobalAveragePool", [name], [f"{prefix}_gavg"]))
        out(f"{prefix}_gavg", TensorProto.FLOAT)
    if extremes:
        nodes.append(helper.make_node("GlobalMaxPool", [name], [f"{prefix}_gmax"]))
        out(f"{prefix}_gmax", TensorProto.FLOAT)
    if extremes and not nonnegative:
        nodes.append(helper.make_node("ReduceMin", [name], [f"{prefix}_min"], keepdims=0))
        out(f"{prefix}_min", TensorProto.FLOAT)
    return nodes


class PooledSummary:
    """One batch of one pooled tensor (``spatial``: its height times width), read from the
    session's outputs; ``channel_sums`` is empty where no means were asked for."""

    def __init__(
        self,
        values: Mapping[str, np.ndarray],
        prefix: str,
        spatial: int,
        *,
        extremes: bool,
        nonnegative: bool,
        means: bool,
    ) -> None:
        self.sample = values.get(f"{prefix}_sample")  # where a step was asked for
        pooled = values[f"{prefix}_gavg"] if means else values[f"{prefix}_gmax"]  # (N, C, 1, 1)
        self.size = int(pooled.size) * spatial
        self.minimum, self.maximum = 0.0, 0.0
        if self.size and extremes:
            self.maximum = float(values[f"{prefix}_gmax"].max())
            self.minimum = 0.0 if nonnegative else float(values[f"{prefix}_min"])
        # an Inf reaches the extremes; a NaN only the means (where they were asked for)
        self.finite = math.isfinite(self.minimum) and math.isfinite(self.maximum)
        self.channel_count = int(pooled.shape[0]) * spatial
        self.channel_sums = np.zeros(0)  # (C,) where means were asked for
        if self.sample is not None:  # NaN anywhere in the sample makes its sum NaN
            self.finite = self.finite and bool(np.isfinite(values[f"{prefix}_ssum"]))
        if means:
            self.finite = self.finite and bool(np.isfinite(pooled).all())
            # per-channel (axis 1) sums from the means: mean times the values per channel
            self.channel_sums = pooled.astype(np.float64).sum(axis=(0, 2, 3)) * spatial
