"""Which calibration batches the in-graph statistics sample, and which tensors need no minimum.

A histogram is binned from an evenly strided sample of each batch (``quanta.runtime.statistics``);
that sample needs the tensor in NCHW order, which costs ONNX Runtime a copy of every blocked
(NCHWc) 4-D activation. A long calibration samples ``SAMPLED_BATCHES`` batches, evenly spread
over the run; every other batch is summarized by layout-aware pooling
(``quanta.runtime.pooled_statistics``) and only widens the ranges, exactly. Calibrations of up
to ``SAMPLED_BATCHES`` batches sample every batch, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from quanta.graph.index import GraphIndex
from quanta.opfacts import OpKind, facts_of
from quanta.runtime.statistics import ChannelSums, StatisticsSession, TensorSummary

__all__ = ["SAMPLED_BATCHES", "InGraphStatistics", "nonnegative_tensors", "sampled_batches"]

# NOTE: up to 32 batches x 2^20 sampled values per tensor: MobileNetV2's 168 calibration crops
# (19 batches) keep every batch's sample; its 2,016 augmented samples (224 batches) sample 32.
SAMPLED_BATCHES = 32

Summary = tuple[dict[str, TensorSummary], dict[str, ChannelSums]]


def sampled_batches(total: int, most: int | None = None) -> frozenset[int]:
    """``most`` (default ``SAMPLED_BATCHES``) batch indices evenly spread over ``total`` (all
    of them when ``total <= most``); batch 0 is always one."""
    most = SAMPLED_BATCHES if most is None else most
    if total <= most:
        return frozenset(range(total))
    return frozenset(j * total // most for j in range(most))


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
    """Two sessions on the same model: the full statistics with samples on the sampled batches,
    layout-aware pooled ones (no sample) on the rest; made on first use."""

    def __init__(
        self,
        make: Callable[..., StatisticsSession],
        model: onnx.ModelProto,
        tensors: Sequence[str],
        samples: bool,
        total: int,
    ) -> None:
        self.make, self.samples = make, samples
        self.nonnegative = nonnegative_tensors(model, tensors)
        self.sampled = sampled_batches(total) if samples else frozenset()
        self.full: StatisticsSession | None = None
        self.pooled: StatisticsSession | None = None
        self._session(0)  # raises StatisticsUnavailable where statistics cannot be built

    def _session(self, i: int) -> StatisticsSession:
        if i in self.sampled:
            if self.full is None:
                self.full = self.make(samples=True)
            return self.full
        if self.pooled is None:
            self.pooled = self.make(samples=False, pooled=True, nonnegative=self.nonnegative)
        return self.pooled

    def run(self, feeds: Mapping[str, np.ndarray], i: int) -> Summary | None:
        """Batch ``i``'s summaries, or None where it holds a NaN or Inf."""
        return self._session(i).run(feeds)
