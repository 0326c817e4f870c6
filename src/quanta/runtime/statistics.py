"""Calibration statistics computed inside the ONNX Runtime graph.

Returning every observed activation to NumPy costs more than the model's own inference (the
tensors are materialized, copied out and scanned again). Instead the model is copied with, per
observed tensor ``t``, a few small extra outputs:

- ``ReduceMin(t)``, ``ReduceMax(t)``: the batch's exact extremes;
- ``ReduceSum(t)`` (all axes), or per channel for a tensor whose channel means are asked for:
  a NaN anywhere makes it NaN (``ReduceMin``/``ReduceMax`` may skip a NaN, measured on
  onnxruntime 1.32), an Inf makes it non-finite, so a finite sum means a finite batch;
- ``Size(t)`` (``Shape(t)`` for channel sums);
- for histograms, an evenly strided sample of ``ceil(size / sample_cap)`` step of the flattened
  tensor (``Reshape`` + ``Slice``, step computed in the graph), at most ``sample_cap`` values.

The caller histograms the samples and rebuilds any batch whose check sum is not finite the old
way (``session_with_outputs``), so NaN and Inf are handled exactly as before.

A ``pooled`` session (batches a long run does not sample, ``quanta.graph.sampled_statistics``)
summarizes 4-D tensors by layout-aware pooling (``quanta.runtime.pooled_statistics``) and has
no per-tensor NaN check: instead the ``ReduceSum`` of each float graph output of the model,
and the pooled extremes, must be finite. An Inf reaches the pooled extremes. A NaN that reaches
no graph output (some op between drops it) is not seen on such a batch: there
``GlobalMaxPool`` (and ``ReduceMin``) skip it, and the maximum it reports may then be that of
the values after the NaN only (measured on onnxruntime 1.32: in about half of the batches with
a NaN in a convolution's output), so that batch could narrow a range the whole-tensor path
would not. Calibration inputs are finite (``quanta.data`` refuses NaN and Inf), so a NaN inside
needs an op that makes one (0/0, Inf - Inf, Log or Sqrt of a negative) and a later op that
drops it before every output; Relu, Clip and Max(x, 0) (fused into a Conv or not) and the pools
were measured to keep it. A run that samples every batch, and a long run's first batch, keep
the exact check; a long run's later sampled batches (``spatial_steps``) add the sum of each
blocked-layout sample, which a NaN in its rows and columns makes NaN.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from quanta.runtime.pooled_statistics import PooledSummary, pooled_nodes
from quanta.runtime.session import OptimizationLevel, _options

__all__ = [
    "ChannelSums",
    "SAMPLE_CAP",
    "StatisticsSession",
    "StatisticsUnavailable",
    "TensorSummary",
    "tensor_shapes",
]

# NOTE: values histogrammed per tensor per batch, as quanta.quant.histogram's
# MAX_HISTOGRAM_VALUES for whole tensors (the same strided sample); the histogram of a sample
# keeps the batch's total count (each value weighted by the stride), min and max stay exact.
# 2^16 was measured faster but worse: magika's fully-int8 fidelity 0.9874 against 0.9933.
SAMPLE_CAP = 1 << 20


@dataclass(frozen=True)
class TensorSummary:
    """One batch of one tensor: exact extremes, its value count, and a strided sample (or
    None when no sample was asked for)."""

    minimum: float
    maximum: float
    size: int
    sample: npt.NDArray[np.float32] | None


@dataclass(frozen=True)
class ChannelSums:
    """One batch of one tensor: float32 sums per channel and the values per channel."""

    sums: npt.NDArray[np.float64]
    count: int


class StatisticsSession:
    """A session on a copy of ``model`` that returns, per batch, a ``TensorSummary`` for each
    of ``tensors`` and ``ChannelSums`` for each of ``channel_axes`` (tensor -> channel axis).

    Args:
        samples: also return each tensor's strided sample (for histograms): True for every
            tensor, or the tensors to sample.
        sample_cap: at most this many sampled values per tensor per batch.
        level: ONNX Runtime graph optimizations ("all": the extra outputs are small, so the
            fusions and blocked layouts of full optimization stay available).
        pooled: summarize the 4-D tensors not sampled with layout-aware pooling
            (``quanta.runtime.pooled_statistics``) instead of reductions.
        nonnegative: tensors that are >= 0 by construction: pooled, their minimum is reported
            as 0 (every range includes 0) and not computed.
        skip_means: tensors of ``channel_axes`` whose sums this session does not take (bias
            correction's means come from a long run's sampled batches only).
        shapes: ``tensor_shapes(model)`` where the caller has them (several sessions on one
            model infer them once).
        spatial_steps: pooled, the sampled 4-D tensors sampled inside the blocked layout
            instead (every ``step``-th row and column, all channels: no copy to NCHW) and
            summarized by pooling; for a long run's sampled batches after its first.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        tensors: Sequence[str],
        channel_axes: Mapping[str, int],
        *,
        samples: bool | Collection[str],
        sample_cap: int = SAMPLE_CAP,
        threads: int = 0,
        level: OptimizationLevel = "all",
        pooled: bool = False,
        nonnegative: Collection[str] = (),
        skip_means: Collection[str] = (),
        shapes: Mapping[str, tuple[int | None, ...]] | None = None,
        spatial_steps: Mapping[str, int] | None = None,
    ) -> None:
        self.tensors = list(tensors)
        self.channel_axes = {n: a for n, a in channel_axes.items() if n not in skip_means}
        self.sampled = frozenset(
            self.tensors if samples is True else () if samples is False else samples
        )
        self.nonnegative = frozenset(nonnegative)
        if shapes is None:
            shapes = tensor_shapes(model) if channel_axes or pooled else {}
        ranks = {name: len(shape) for name, shape in shapes.items()}
        steps = spatial_steps or {}
        # NOTE: pooled: 4-D tensors of a known height and width (a Shape node would cost the
        # same copy to NCHW that pooling avoids), observed ones (extremes) and those whose
        # channel-1 means are asked for
        self._spatial = {
            name: shape[2] * shape[3]
            for name, shape in shapes.items()
            if pooled
            and (name not in self.sampled or name in steps)
            and len(shape) == 4
            and shape[2] is not None
            and shape[3] is not None
        }
        self.pooled = {name for name in self.tensors if name in self._spatial}
        self._steps = {n: k for n, k in steps.items() if n in self.pooled and n in self.sampled}
        self.pooled_means = {
            name
            for name, axis in self.channel_axes.items()
            if name in self._spatial and axis % 4 == 1
        }
        # NOTE: the NaN check of a pooled session: the float graph outputs' sums (module
        # docstring); a model with none keeps a GlobalAveragePool on every pooled tensor
        self._checks = [
            o.name for o in model.graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT
        ] if self.pooled else []  # fmt: skip
        # pooled tensors that get a GlobalAveragePool: those whose channel means are taken,
        # and every one where the model has no float output to check for NaN
        self._averaged = {*self.pooled_means, *(() if self._checks else self.pooled)}
        self._pooled_prefix = {
            name: _prefix(self.tensors, list(self.channel_axes), name)
            for name in sorted(self.pooled | self.pooled_means)
        }
        augmented, self._outputs = _augment(model, self.tensors, self.channel_axes, self.sampled,
                                            sample_cap, ranks, self.pooled, self.pooled_means,
                                            self.nonnegative, self._checks,
                                            self._averaged, self._steps)  # fmt: skip
        # NOTE: no memory pattern: a long run uses several sessions, and with it each one's
        # first two runs on MobileNetV2 took about 145 ms against 60 ms after (the pattern
        # traced, then its memory first touched); without, the first run only. The same
        # kernels, so the same values. Without the arena as well, every run took 100 ms.
        options = _options(level, threads)
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(
            augmented.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def run(
        self, feeds: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, TensorSummary], dict[str, ChannelSums]] | None:
        """The summaries of one batch, or None when any observed value is NaN or Inf (the
        caller then reads those tensors whole)."""
        values = dict(zip(self._outputs, self.session.run(self._outputs, dict(feeds)), strict=True))
        summaries: dict[str, TensorSummary] = {}
        sums: dict[str, ChannelSums] = {}
        pooled = {
            name: PooledSummary(
                values,
                prefix,
                self._spatial[name],
                extremes=name in self.pooled,
                nonnegative=name in self.nonnegative,
                means=name in self._averaged,
            )
            for name, prefix in self._pooled_prefix.items()
        }
        if not all(p.finite for p in pooled.values()):
            return None
        if not all(np.isfinite(values[f"{_P}o{k}_sum"]) for k in range(len(self._checks))):
            return None
        for i, name in enumerate(self.tensors):
            if name in self.pooled:
                p = pooled[name]
                summaries[name] = TensorSummary(p.minimum, p.maximum, p.size, p.sample)
                continue
            check = values.get(f"{_P}{i}_sum")
            if check is not None and not np.isfinite(check).all():
                return None
            sample = values[f"{_P}{i}_sample"] if name in self.sampled else None
            summaries[name] = TensorSummary(
                float(values[f"{_P}{i}_min"]),
                float(values[f"{_P}{i}_max"]),
                int(values[f"{_P}{i}_size"]),
                sample,
            )
        for j, (name, axis) in enumerate(self.channel_axes.items()):
            if name in self.pooled_means:
                p = pooled[name]
                sums[name] = ChannelSums(p.channel_sums, p.channel_count)
                continue
            channel = values[f"{_P}c{j}_sums"].astype(np.float64)
            if not np.isfinite(channel).all():
                return None
            shape = values[f"{_P}c{j}_shape"]
            count = int(np.prod(shape)) // max(int(shape[axis % len(shape)]), 1)
            sums[name] = ChannelSums(channel, count)
        return summaries, sums


_P = "__quanta_stat"


def _prefix(tensors: list[str], channels: list[str], name: str) -> str:
    """The output prefix of a pooled tensor: its place among the observed ones, else among
    those observed for their channel means only."""
    return f"{_P}{tensors.index(name)}" if name in tensors else f"{_P}m{channels.index(name)}"


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Inferred shapes, None for a dimension not known as a positive integer."""
    inferred = onnx.shape_inference.infer_shapes(model)
    return {
        v.name: tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in v.type.tensor_type.shape.dim
        )
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        if v.type.tensor_type.HasField("shape")
    }


def _augment(
    model: onnx.ModelProto,
    tensors: list[str],
    channel_axes: dict[str, int],
    samples: Collection[str],
    sample_cap: int,
    ranks: Mapping[str, int],
    pooled: Collection[str] = (),
    pooled_means: Collection[str] = (),
    nonnegative: Collection[str] = (),
    checks: Sequence[str] = (),
    averaged: Collection[str] = (),
    steps: Mapping[str, int] | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """The model with only the statistics as outputs (so nothing else is copied out); the
    ``checks`` outputs summed for the NaN check, the ``averaged`` pooled tensors with means."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)
    del g.output[:]
    outputs: list[str] = []
    nodes: list[onnx.NodeProto] = []

    def out(name: str, elem: int = TensorProto.FLOAT) -> None:
        g.output.append(helper.make_tensor_value_info(name, elem, None))
        outputs.append(name)

    def const(name: str, value: np.ndarray) -> str:
        g.initializer.append(numpy_helper.from_array(value, f"{_P}_{name}"))
        return f"{_P}_{name}"

    def reduce_sum(x: str, y: str, axes: list[int] | None) -> None:
        if axes is None:
            nodes.append(helper.make_node("ReduceSum", [x], [y], keepdims=0))
        elif opset >= 13:
            nodes.append(helper.make_node("ReduceSum", [x, const(y, np.array(axes))], [y],
                                          keepdims=0))  # fmt: skip
        else:
            nodes.append(helper.make_node("ReduceSum", [x], [y], keepdims=0, axes=axes))

    flat = const("flat", np.array([-1], np.int64))
    cap_less_1 = const("cap_less_1", np.array(sample_cap - 1, np.int64))
    cap = const("cap", np.array(sample_cap, np.int64))
    start, end = const("start", np.array([0], np.int64)), const("end", np.array([2**62]))
    axis0, one = const("axis0", np.array([0], np.int64)), const("one", np.array([1], np.int64))
    summed: set[str] = set()
    for name in sorted({*pooled, *pooled_means}):
        prefix = _prefix(tensors, list(channel_axes), name)
        nodes.extend(pooled_nodes(prefix=prefix, name=name, out=out, extremes=name in pooled,
                                  nonnegative=name in nonnegative,
                                  means=name in averaged,
                                  step=(steps or {}).get(name, 0)))  # fmt: skip
    for k, name in enumerate(checks):
        reduce_sum(name, f"{_P}o{k}_sum", None)
        out(f"{_P}o{k}_sum")
    for j, (name, axis) in enumerate(channel_axes.items()):
        if name in pooled_means:
            continue
        p = f"{_P}c{j}"
        rank = ranks.get(name)
        if rank is None or rank == 0:
            raise StatisticsUnavailable(name)
        reduce_sum(name, f"{p}_sums", [a for a in range(rank) if a != axis % rank])
        nodes.append(helper.make_node("Shape", [name], [f"{p}_shape"]))
        out(f"{p}_sums")
        out(f"{p}_shape", TensorProto.INT64)
        summed.add(name)
    for i, name in enumerate(tensors):
        if name in pooled:
            continue
        p = f"{_P}{i}"
        nodes.append(helper.make_node("ReduceMin", [name], [f"{p}_min"], keepdims=0))
        nodes.append(helper.make_node("ReduceMax", [name], [f"{p}_max"], keepdims=0))
        nodes.append(helper.make_node("Size", [name], [f"{p}_size"]))
        out(f"{p}_min")
        out(f"{p}_max")
        out(f"{p}_size", TensorProto.INT64)
        if name not in summed:  # a channel sum already catches NaN and Inf
            reduce_sum(name, f"{p}_sum", None)
            out(f"{p}_sum")
        if name in samples:
            # step = ceil(size / cap), as a (1,) tensor for Slice
            nodes.append(helper.make_node("Add", [f"{p}_size", cap_less_1], [f"{p}_n"]))
            nodes.append(helper.make_node("Div", [f"{p}_n", cap], [f"{p}_step0"]))
            nodes.append(helper.make_node("Reshape", [f"{p}_step0", one], [f"{p}_step"]))
            nodes.append(helper.make_node("Reshape", [name, flat], [f"{p}_flat"]))
            nodes.append(helper.make_node("Slice", [f"{p}_flat", start, end, axis0, f"{p}_step"],
                                          [f"{p}_sample"]))  # fmt: skip
            out(f"{p}_sample")
    g.node.extend(nodes)
    return m, outputs


class StatisticsUnavailable(Exception):
    """Raised by ``StatisticsSession``: a tensor whose statistics cannot be built in the graph
    (its rank is unknown)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the rank of {name!r} is not known")
