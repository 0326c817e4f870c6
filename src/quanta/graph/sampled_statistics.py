"""Which calibration batches the in-graph statistics sample, and which tensors need no minimum.

A histogram is binned from an evenly strided sample of each batch (``quanta.runtime.statistics``,
at most ``SAMPLE_CAP`` values per tensor and batch); that sample needs the tensor in NCHW order,
which costs ONNX Runtime a copy of every blocked (NCHWc) 4-D activation, and NumPy a pass over
each sampled value. Once a tensor's histogram is sure to hold ``SAMPLED_VALUES`` values, it is
sampled on every ``k``-th batch only (``k`` from the first batch's sample size), and on the
other batches summarized by layout-aware pooling
(``quanta.runtime.pooled_statistics``): those batches widen its range exactly but add no counts.
Bias correction's channel means of an observed tensor are taken on its sampled batches only (at
least ``SAMPLED_VALUES`` values: the pooled batches then need no ``GlobalAveragePool``, and
their NaN check is the graph outputs', ``quanta.runtime.statistics``).
A run whose tensors' samples add up to less than twice ``SAMPLED_VALUES`` samples every batch,
as before. In a longer one, the sampled batches after the first take a 4-D tensor's sample
inside the blocked layout too (``spatial_steps``: every ``s``-th row and column, all channels),
with the pooled extremes, so only the first batch pays the copy to NCHW.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np
import onnx

from quanta.graph.index import GraphIndex
from quanta.opfacts import OpKind, facts_of
from quanta.runtime.statistics import (
    SAMPLE_CAP,
    ChannelSums,
    StatisticsSession,
    TensorSummary,
    tensor_shapes,
)

__all__ = ["SAMPLED_VALUES", "InGraphStatistics", "nonnegative_tensors", "sample_strides"]

# NOTE: 2^24 sampled values per histogram, or all of them: 16 batches' samples at the largest
# (2^20); MobileNetV2's 168 calibration crops (19 batches of 9) and every corpus model keep every
# batch's sample, its 2,016 augmented ones (224 batches) sample the largest every 12th.
SAMPLED_VALUES = 1 << 24

Summary = tuple[dict[str, TensorSummary], dict[str, ChannelSums]]


def sample_strides(sample_sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Per tensor, sample every ``k``-th of ``total`` batches: the largest ``k`` that still gives
    ``SAMPLED_VALUES`` values at ``sample_sizes`` per batch (1: every batch), taken among the
    numbers ``2^a * 3^b``, so a batch's sampled set depends only on the powers of 2 and 3 in its
    index (capped) and a few sessions serve the whole run."""
    raw = {name: max(1, total * size // SAMPLED_VALUES) for name, size in sample_sizes.items()}
    most = max(raw.values(), default=1)
    smooth = [2**a * 3**b for a in range(most.bit_length()) for b in range(most.bit_length())]
    return {name: max(n for n in smooth if n <= k) for name, k in raw.items()}


def nonnegative_tensors(model: onnx.ModelProto, tensors: Sequence[str]) -> frozenset[str]:
    """The ``tensors`` that are >= 0 by construction: outputs of an activation (op facts) whose
    lower bound is a constant >= 0 (Relu; Clip with such a min)."""
    index = GraphIndex(model)
    found = set()
    for name in tensors:
        node = index.producer.get(name)
        facts = facts_of(node.op_type) if node is not None else None
        if node is None or facts is None or facts.kind is not OpKind.ACTIVATION:
            continue
        low = _lower_bound(index, node)
        if low is not None and low >= 0.0:
            found.add(name)
    return frozenset(found)


def _lower_bound(index: GraphIndex, node: onnx.NodeProto) -> float | None:
    if node.op_type == "Relu":
        return 0.0
    if node.op_type != "Clip":
        return None
    for attr in node.attribute:  # opset < 11
        if attr.name == "min":
            return float(attr.f)
    if len(node.input) > 1 and node.input[1] and index.is_constant(node.input[1]):
        value = index.constant(node.input[1])
        return float(value) if value.size == 1 else None
    return None


class InGraphStatistics:
    """Sessions on the same model, one per set of tensors sampled in a batch (every tensor on
    batch 0, and where a stride divides the batch's index; ``sample_strides``), the others
    pooled; made on first use. ``means``: the tensors whose channel means are asked for; an
    observed one's are taken where it is sampled (on every batch where nothing is sampled)."""

    def __init__(
        self,
        make: Callable[..., StatisticsSession],
        model: onnx.ModelProto,
        tensors: Sequence[str],
        samples: bool,
        total: int,
        means: Collection[str] = (),
    ) -> None:
        self.make, self.samples, self.total = make, samples, total
        self.tensors = frozenset(tensors)
        self.means = self.tensors & frozenset(means)
        self.nonnegative = nonnegative_tensors(model, tensors)
        self.strides: dict[str, int] | None = None
        self.model = model
        self.shapes: dict[str, tuple[int | None, ...]] | None = None  # inferred once, on use
        self.sessions: dict[tuple[frozenset[str], bool], StatisticsSession] = {}
        self.steps: dict[str, int] = {}  # a long run's spatial_steps, after its first batch
        self._session(self.tensors if samples else frozenset())  # raises StatisticsUnavailable

    def _session(self, sampled: frozenset[str]) -> StatisticsSession:
        # the statistics as before pooling: every tensor sampled, but for a long run's batches
        # after its first (sampled inside the blocked layout, spatial_steps)
        full = sampled == self.tensors and not self.steps
        key = (sampled, full)
        if key not in self.sessions:
            if full:
                self.sessions[key] = self.make(samples=True)
            else:
                skip = self.means - sampled if self.samples else frozenset()
                self.sessions[key] = self.make(samples=sampled, pooled=True,
                                               nonnegative=self.nonnegative, skip_means=skip,
                                               shapes=self._shapes(),
                                               spatial_steps=self.steps)  # fmt: skip
        return self.sessions[key]

    def _shapes(self) -> dict[str, tuple[int | None, ...]]:
        """The model's tensor shapes, inferred on first use and kept."""
        if self.shapes is None:
            self.shapes = tensor_shapes(self.model)
        return self.shapes

    def run(self, feeds: Mapping[str, np.ndarray], i: int) -> Summary | None:
        """Batch ``i``'s summaries, or None where it holds a NaN or Inf."""
        if not self.samples:
            return self._session(frozenset()).run(feeds)
        if self.strides is None:
            result = self._session(self.tensors).run(feeds)
            if result is not None:  # the sample sizes of a whole batch
                sizes = {n: s.sample.size for n, s in result[0].items() if s.sample is not None}
                self.strides = sample_strides(sizes, self.total)
                if max(self.strides.values(), default=1) > 1:  # a long run
                    self.steps = spatial_steps(result[0], self._shapes())
            return result
        sampled = frozenset(n for n, k in self.strides.items() if i % k == 0)
        return self._session(sampled).run(feeds)


def spatial_steps(
    summaries: Mapping[str, TensorSummary], shapes: Mapping[str, tuple[int | None, ...]]
) -> dict[str, int]:
    """Per 4-D tensor of a known height and width: the smallest step in both that leaves at
    most ``SAMPLE_CAP`` values of a batch of ``summaries``' size (every channel kept)."""
    steps = {}
    for name, s in summaries.items():
        shape = shapes.get(name, ())
        if len(shape) != 4 or shape[2] is None or shape[3] is None:
            continue
        h, w = shape[2], shape[3]
        rest, step = s.size // (h * w), 1
        while rest * -(-h // step) * -(-w // step) > SAMPLE_CAP:
            step += 1
        steps[name] = step
    return steps
