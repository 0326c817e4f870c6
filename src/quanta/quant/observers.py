"""Observers: stream batches of a tensor, remember its range, turn it into QParams.

Min-max keeps the extremes ever seen; moving-average min-max keeps an exponential moving average
of each batch's extremes, as TensorFlow's quantization-aware training does
(``ema = decay * ema + (1 - decay) * batch_value``), which ignores rare outliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from quanta.errors import QuantaError
from quanta.quant.qparams import QParams, choose_qparams

__all__ = ["MeanObserver", "MinMaxObserver", "MovingAverageMinMaxObserver", "Observer"]

# One batch's extremes: scalars per tensor, arrays of one value per channel otherwise.
_Extremes = tuple[np.float64, np.float64] | tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


@dataclass
class Observer:
    """Base: per-tensor (``axis=None``) or per-channel range of a streamed tensor.

    ``update`` skips NaN and Inf values and counts them in ``nonfinite``, so one bad sample can
    never turn a scale into NaN.
    """

    axis: int | None = None
    min_val: npt.NDArray[np.float64] | None = None
    max_val: npt.NDArray[np.float64] | None = None
    nonfinite: int = 0
    batches: int = 0

    def _batch_range(self, x: npt.ArrayLike) -> _Extremes | None:
        x = np.asarray(x)
        if x.size == 0:
            return None
        if self.axis is None:
            # NOTE: fast path for the usual all-finite tensor: min and max are finite only if
            # no NaN or Inf is present (NaN propagates through min/max), so one pass suffices.
            lo, hi = x.min(), x.max()
            if np.isfinite(lo) and np.isfinite(hi):
                return np.float64(lo), np.float64(hi)
        finite = np.isfinite(x)
        if not finite.all():
            self.nonfinite += int(x.size - finite.sum())
        if self.axis is None:
            values = x[finite]
            if values.size == 0:
                return None
            return np.float64(values.min()), np.float64(values.max())
        axis = self.axis % x.ndim
        moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)  # (C, everything else)
        ok = np.moveaxis(finite, axis, 0).reshape(x.shape[axis], -1)
        lo = np.where(ok, moved, np.inf).min(axis=1).astype(np.float64)
        hi = np.where(ok, moved, -np.inf).max(axis=1).astype(np.float64)
        return lo, hi

    def update(self, x: npt.ArrayLike) -> None:
        raise NotImplementedError

    def update_summary(
        self, lo: float, hi: float, size: int, sample: npt.NDArray[np.floating] | None
    ) -> None:
        """Add a batch known by its finite extremes, value count and (for observers that
        need one) an evenly strided ``sample`` of it: calibration computes these inside the
        ONNX Runtime graph. Only observers with ``from_summary`` accept it."""
        raise NotImplementedError(f"{type(self).__name__} needs whole tensors")

    # whether update_summary works (per tensor only: a summary holds no per-channel extremes)
    from_summary: ClassVar[bool] = False
    needs_sample: ClassVar[bool] = False

    def range(self) -> tuple[np.ndarray, np.ndarray]:
        """The observed ``(rmin, rmax)``; raises if nothing finite was seen."""
        if self.min_val is None or self.max_val is None:
            raise QuantaError(
                "observer saw no finite values; feed it at least one calibration batch"
            )
        lo = np.where(np.isfinite(self.min_val), self.min_val, 0.0)
        hi = np.where(np.isfinite(self.max_val), self.max_val, 0.0)
        return lo, hi

    def qparams(self, dtype: str = "int8", *, symmetric: bool = False) -> QParams:
        lo, hi = self.range()
        return choose_qparams(lo, hi, dtype, symmetric=symmetric, axis=self.axis)


@dataclass
class MinMaxObserver(Observer):
    """Running minimum and maximum over all batches (exact; merge by min/max)."""

    def update(self, x: npt.ArrayLike) -> None:
        r = self._batch_range(x)
        if r is None:
            return
        lo, hi = r
        self.batches += 1
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = np.asarray(lo), np.asarray(hi)
        else:
            self.min_val = np.minimum(self.min_val, lo)
            self.max_val = np.maximum(self.max_val, hi)

    from_summary: ClassVar[bool] = True

    def update_summary(
        self, lo: float, hi: float, size: int, sample: npt.NDArray[np.floating] | None
    ) -> None:
        if self.axis is not None:
            raise QuantaError("a per-channel MinMaxObserver needs whole tensors, not summaries")
        if size == 0:
            return
        self.batches += 1
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = np.asarray(np.float64(lo)), np.asarray(np.float64(hi))
        else:
            self.min_val = np.minimum(self.min_val, np.float64(lo))
            self.max_val = np.maximum(self.max_val, np.float64(hi))

    def merge(self, other: MinMaxObserver) -> None:
        """Add another worker's state: the min of the minima and the max of the maxima, exactly
        what one observer over all the batches would hold."""
        self.nonfinite += other.nonfinite
        self.batches += other.batches
        if other.min_val is None or other.max_val is None:
            return
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = other.min_val, other.max_val
        else:
            self.min_val = np.minimum(self.min_val, other.min_val)
            self.max_val = np.maximum(self.max_val, other.max_val)


@dataclass
class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of each batch's min and max; the first batch initialises it."""

    decay: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise QuantaError(f"EMA decay must be in [0, 1), got {self.decay}")

    def update(self, x: npt.ArrayLike) -> None:
        r = self._batch_range(x)
        if r is None:
            return
        lo, hi = r
        self.batches += 1
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = np.asarray(lo), np.asarray(hi)
        else:
            # A channel with no finite value in this batch (lo = inf) keeps its average; a
            # channel seen for the first time (average still inf) starts at this batch's value.
            d = self.decay
            seen_lo, seen_hi = np.isfinite(self.min_val), np.isfinite(self.max_val)
            ema_lo = np.where(seen_lo, d * self.min_val + (1 - d) * lo, lo)
            ema_hi = np.where(seen_hi, d * self.max_val + (1 - d) * hi, hi)
            self.min_val = np.where(np.isfinite(lo), ema_lo, self.min_val)
            self.max_val = np.where(np.isfinite(hi), ema_hi, self.max_val)


@dataclass
class MeanObserver:
    """Running mean of a tensor per channel (``axis``), over every other axis and all batches.

    Bias correction uses it: the expected input of a layer times its weight quantization error
    is the shift that rounding the weights adds to the layer's output.
    """

    axis: int = 1
    total: npt.NDArray[np.float64] | None = None
    count: int = 0

    def update(self, x: npt.ArrayLike) -> None:
        x = np.asarray(x)
        if x.ndim == 0 or x.size == 0:
            return
        axis = self.axis % x.ndim
        # NOTE: fast path, one pass and no copy: summed in float64, finite values can neither
        # overflow nor give NaN, so finite sums mean every position was finite. Only a batch
        # holding NaN or Inf pays for the transposed float64 copy that drops those positions.
        others = tuple(a for a in range(x.ndim) if a != axis)
        s = x.sum(axis=others, dtype=np.float64)  # (C,)
        if np.isfinite(s).all():
            count = x.size // max(x.shape[axis], 1)
        else:
            moved = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis]).astype(np.float64)
            moved = moved[np.isfinite(moved).all(axis=1)]  # (finite rest, C)
            s, count = moved.sum(axis=0), len(moved)
        self.total = s if self.total is None else self.total + s
        self.count += count

    def update_sums(self, sums: npt.NDArray[np.float64], count: int) -> None:
        """Add a batch known by its (finite) per-channel sums and values per channel."""
        self.total = sums if self.total is None else self.total + sums
        self.count += count

    def merge(self, other: MeanObserver) -> None:
        """Add another worker's sums and counts."""
        if other.total is not None:
            self.total = other.total if self.total is None else self.total + other.total
        self.count += other.count

    def mean(self) -> npt.NDArray[np.float64]:
        if self.total is None or self.count == 0:
            raise QuantaError("mean observer saw no finite values; feed it at least one batch")
        return self.total / self.count
