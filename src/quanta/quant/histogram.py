"""HistogramObserver: exact min/max plus a signed histogram of fixed size, for range calibration.

Memory is O(bins) whatever the data size. When a batch falls outside the histogram, the range is
grown so that the new bin width is an integer multiple ``k`` of the old one and the new edges lie
on the old lattice (``new_lo = old_lo - m * old_width``, ``m`` an integer); each new bin is then
the sum of whole old bins, ``new[(i + m) // k] += old[i]``. No count is ever split, so the
histogram stays exactly the histogram of all the data on the final grid (up to floating-point
ties at an edge); the only loss is resolution: the final bin width ``w`` satisfies
``w <= 2 * (max - min) / (bins - 1)`` (at most about twice a one-shot histogram's
``(max - min) / bins``), so every value is known to within one bin of that width.

``merge`` keeps the coarser observer's grid exact (grown as above) and spreads the other one's
counts over it proportionally to overlap (linear interpolation of its CDF, the bins' mass
assumed uniform). That moves mass by less than one of its bins (narrower than the target's), so
the merged cumulative count at any edge is off by at most one source bin's count.

Example:
    >>> import numpy as np
    >>> obs = HistogramObserver(bins=2048)
    >>> obs.update(np.linspace(-1.0, 10.0, 10_000))
    >>> obs.range_for("minmax")
    (-1.0, 10.0)
    >>> lo, hi = obs.range_for("percentile", percentile=99.0)
    >>> bool(lo < -0.8 and 9.8 < hi < 10.0)
    True
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from quanta.errors import QuantaError
from quanta.quant.calibration_methods import RANGE_METHODS
from quanta.quant.observers import Observer
from quanta.quant.qparams import QParams, choose_qparams, qrange

__all__ = ["HistogramObserver"]

# NOTE: beyond this ratio of old to new lattice, integer bin arithmetic would overflow; the old
# histogram is then a speck on the new grid and each old bin moves to the bin holding its centre.
_MAX_LATTICE = 2**52


class _State(NamedTuple):
    counts: npt.NDArray[np.float64]
    hist_min: float
    bin_width: float
    min_val: float
    max_val: float


MAX_HISTOGRAM_VALUES = 1 << 20
# NOTE: values binned per chunk by _sample_counts (two 256 KB buffers)
_CHUNK = 1 << 15


@dataclass(eq=False)
class HistogramObserver(Observer):
    """Per-tensor exact min/max and a signed ``bins``-bin histogram, for activation calibration.

    Attributes:
        bins: number of histogram bins (fixed; the histogram never grows). 2048 as TensorRT.
        method: the default range method of ``qparams``: "minmax", "percentile", "entropy",
            "mse" (see ``quanta.quant.calibration_methods``).
        percentile: the default upper quantile (percent) of the "percentile" method.
        counts: (bins,) float64 counts, None before the first finite value.
        hist_min: left edge of bin 0; bin ``j`` is ``[hist_min + j*w, hist_min + (j+1)*w)``.
        bin_width: ``w``; 0 while every finite value seen is equal (all in ``counts[0]``).
        zeros: how many values were exactly 0 (entropy and mse keep them exact).
    """

    bins: int = 2048
    method: str = "minmax"
    percentile: float = 99.999
    counts: npt.NDArray[np.float64] | None = None
    hist_min: float = 0.0
    bin_width: float = 0.0
    zeros: int = 0

    def __post_init__(self) -> None:
        if self.axis is not None:
            raise QuantaError(
                f"HistogramObserver is per tensor only (axis=None), got axis={self.axis}; "
                "use MinMaxObserver(axis=...) for per-channel ranges"
            )
        if isinstance(self.bins, bool) or not isinstance(self.bins, int | np.integer):
            raise QuantaError(f"bins must be an integer >= 2 (e.g. 2048), got {self.bins!r}")
        if self.bins < 2:
            raise QuantaError(f"bins must be an integer >= 2 (e.g. 2048), got {self.bins}")
        if self.method not in RANGE_METHODS:
            raise QuantaError(
                f"calibration method {self.method!r} is not known; "
                f"expected one of {list(RANGE_METHODS)}"
            )
        if not 50.0 <= self.percentile <= 100.0:
            raise QuantaError(
                f"percentile must be in [50, 100] (e.g. 99.999), got {self.percentile}"
            )

    # -- state -----------------------------------------------------------------------------

    @property
    def edges(self) -> npt.NDArray[np.float64]:
        """The (bins + 1,) edges of the current grid (may extend beyond the data's min/max)."""
        return self.hist_min + self.bin_width * np.arange(self.bins + 1, dtype=np.float64)

    def histogram(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(counts, edges)`` with the edges clipped to the exact observed ``[min, max]``."""
        lo, hi = self.range()
        assert self.counts is not None  # range() raised otherwise
        return self.counts.copy(), np.clip(self.edges, float(lo), float(hi))

    def _state(self) -> _State:
        assert self.counts is not None and self.min_val is not None and self.max_val is not None
        lo, hi = float(self.min_val), float(self.max_val)
        return _State(self.counts.copy(), self.hist_min, self.bin_width, lo, hi)

    def _adopt(self, st: _State) -> None:
        self.counts, self.hist_min, self.bin_width = st.counts.copy(), st.hist_min, st.bin_width
        self.min_val, self.max_val = np.asarray(st.min_val), np.asarray(st.max_val)

    def _new_grid(self, lo: float, hi: float) -> None:
        self.counts = np.zeros(self.bins, dtype=np.float64)
        width = (hi - lo) / self.bins
        if not math.isfinite(width):  # hi - lo overflowed float64
            width = hi / self.bins - lo / self.bins
        self.hist_min, self.bin_width = lo, width if width > 0 else 0.0

    def _index(self, v: npt.NDArray[np.floating]) -> npt.NDArray[np.intp]:
        """Bin of each value ``v >= hist_min``: ``floor((v - hist_min) / w)``, at most bins - 1.

        Computed in float64 whatever ``v``'s dtype (float32 widens exactly), in place after the
        first step: a batch's sample is up to 8 MB and this runs per tensor per batch.
        """
        idx = np.subtract(v, self.hist_min, dtype=np.float64)  # >= 0: v >= hist_min
        idx /= self.bin_width
        np.floor(idx, out=idx)
        bins = idx.astype(np.intp)
        return np.minimum(bins, self.bins - 1, out=bins)

    def _sample_counts(self, v: npt.NDArray[np.floating]) -> npt.NDArray[np.intp]:
        """``np.bincount(self._index(v), minlength=bins)`` in two passes fewer: the quotient is
        >= 0, so the integer conversion's truncation is the floor, and the last bin takes the
        counts past it (the top edge, rounded) after counting instead of a clip before. Binned
        in chunks of ``_CHUNK`` values through two reused buffers (the same operations per
        value, so the same counts): about 6 % less binning time in a long calibration run."""
        counts = np.zeros(self.bins, dtype=np.intp)
        step = min(_CHUNK, v.size)
        idx, bins = np.empty(step, np.float64), np.empty(step, np.intp)
        for start in range(0, v.size, step):
            part = v[start : start + step]
            q, b = idx[: part.size], bins[: part.size]
            np.subtract(part, self.hist_min, out=q, dtype=np.float64)  # >= 0: v >= hist_min
            q /= self.bin_width
            np.copyto(b, q, casting="unsafe")  # truncation, as astype
            chunk = np.bincount(b, minlength=self.bins)
            counts += chunk[: self.bins]
            counts[self.bins - 1] += chunk[self.bins :].sum()
        return counts

    def _add_point(self, value: float, mass: float) -> None:
        assert self.counts is not None
        # NOTE: ``_index`` in Python floats (IEEE doubles, the same subtraction, division and
        # floor, so the same bin): a long run adds two points per pooled batch and tensor, and
        # NumPy's per-call cost on a one-value array was about 0.2 s of MobileNetV2's 2,016
        j = 0
        if self.bin_width != 0:
            j = min(max(0, math.floor((float(value) - self.hist_min) / self.bin_width)),
                    self.bins - 1)  # fmt: skip
        self.counts[j] += mass

    def _cover(self, lo: float, hi: float) -> None:
        """Grow the grid to cover ``[lo, hi]``, summing whole old bins (exact, see module doc)."""
        assert self.counts is not None
        w, n = self.bin_width, self.bins
        if w == 0:  # a point mass so far
            if lo == hi:
                return
            point, mass = self.hist_min, float(self.counts.sum())
            self._new_grid(lo, hi)
            self._add_point(point, mass)
            return
        if lo >= self.hist_min and hi <= self.hist_min + n * w:
            return
        m = math.ceil((self.hist_min - lo) / w)  # old bins added below (< 0: empty ones dropped)
        while self.hist_min - m * w > lo:
            m += 1
        k = max(1, math.ceil((hi - (self.hist_min - m * w)) / (n * w)))
        while self.hist_min - m * w + n * k * w < hi:
            k += 1
        new_lo, new_w = self.hist_min - m * w, k * w
        if k < _MAX_LATTICE and abs(m) < _MAX_LATTICE:
            idx = (np.arange(n, dtype=np.int64) + m) // k
        else:
            centres = self.hist_min + (np.arange(n) + 0.5) * w
            idx = np.floor((centres - new_lo) / new_w)
        idx = np.clip(idx, 0, n - 1).astype(np.intp)
        self.counts = np.bincount(idx, weights=self.counts, minlength=n).astype(np.float64)
        self.hist_min, self.bin_width = new_lo, new_w

    def _set_range(self, lo: float, hi: float) -> None:
        if self.min_val is not None and self.max_val is not None:
            lo, hi = min(lo, float(self.min_val)), max(hi, float(self.max_val))
        self.min_val, self.max_val = np.asarray(np.float64(lo)), np.asarray(np.float64(hi))

    # -- streaming and merging ---------------------------------------------------------------

    def update(self, x: npt.ArrayLike) -> None:
        """Add a batch: NaN/Inf are skipped and counted in ``nonfinite``; O(bins) memory."""
        values = np.asarray(x).ravel()
        if values.size == 0:
            return
        # NOTE: one pass each for min, max and the zero count, in the tensor's own dtype (no
        # float64 copy of a 10^7-value feature map); NaN or Inf make min or max non-finite, and
        # only then is the finite mask built. Extremes of float32 values are exact in float64.
        lo, hi = float(values.min()), float(values.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = np.isfinite(values)
            self.nonfinite += int(values.size - np.count_nonzero(finite))
            values = values[finite]
            if values.size == 0:
                return
            lo, hi = float(values.min()), float(values.max())
        if lo <= 0.0 <= hi:  # a count only where a zero can be
            self.zeros += int(values.size - np.count_nonzero(values))
        # NOTE: a very large batch (a CNN's early feature maps: 10^7 values) is histogrammed
        # from an evenly strided sample of at most MAX_HISTOGRAM_VALUES values, each weighted
        # by the stride, so the counts keep the batch's total; min and max above stay exact.
        # Shapes of activation distributions need far fewer samples than that.
        step = -(-values.size // MAX_HISTOGRAM_VALUES)
        self._add(lo, hi, values.size, values[::step])

    from_summary: ClassVar[bool] = True
    needs_sample: ClassVar[bool] = True

    def update_summary(
        self, lo: float, hi: float, size: int, sample: npt.NDArray[np.floating] | None
    ) -> None:
        """Add a batch of ``size`` finite values with extremes ``lo``/``hi``, histogrammed from
        its evenly strided ``sample`` (each value weighted ``size / len(sample)``). The zero
        count is the sample's, weighted the same way: exact when the sample is the batch.
        Without a sample (None) the batch widens the range and the grid, and only its two
        extremes are counted (calibration samples some batches of a long run, evenly spread)."""
        if size == 0:
            return
        if sample is None:
            self._add(float(lo), float(hi), size, None)
            return
        if sample.size == 0:
            raise QuantaError("a HistogramObserver summary needs a sample of the batch")
        sample = sample.ravel()
        if lo <= 0.0 <= hi:
            zeros = int(sample.size - np.count_nonzero(sample))
            self.zeros += zeros if size == sample.size else round(zeros * size / sample.size)
        self._add(float(lo), float(hi), size, sample)

    def _add(
        self, lo: float, hi: float, size: int, sample: npt.NDArray[np.floating] | None
    ) -> None:
        """Grow the grid to ``[lo, hi]`` and add ``sample``'s counts, weighted up to ``size``
        (None: only the batch's two extremes counted)."""
        self.batches += 1
        if self.counts is None or self.min_val is None or self.max_val is None:
            self._new_grid(lo, hi)
        else:
            self._cover(min(lo, float(self.min_val)), max(hi, float(self.max_val)))
        assert self.counts is not None
        if sample is None:
            # NOTE: the batch's extremes count once each, so that the outer non-empty bins (what
            # "minmax" reads) reach them: uncounted, a long run's minmax fell 13 % short on a
            # MobileNetV2 tensor over 2,016 samples; two values among millions move no other method
            self._set_range(lo, hi)
            self._add_point(lo, 1.0)
            self._add_point(hi, 1.0)
            return
        if self.bin_width == 0:
            self.counts[0] += size
        else:
            counts = self._sample_counts(sample)
            if size != sample.size:
                self.counts += counts * (size / sample.size)
            else:
                self.counts += counts
        self._set_range(lo, hi)

    def merge(self, other: HistogramObserver) -> None:
        """Add ``other``'s state to this one (distributed calibration): min/max merge exactly.

        The coarser of the two grids is kept exact (grown by whole-bin sums to cover both
        ranges); the finer one's counts are spread over it proportionally to overlap.
        """
        if not isinstance(other, HistogramObserver):
            raise QuantaError(
                f"can only merge another HistogramObserver, got {type(other).__name__}"
            )
        if other.bins != self.bins:
            raise QuantaError(
                f"cannot merge histograms of {other.bins} and {self.bins} bins; "
                "build every worker's observer with the same bins"
            )
        self.nonfinite += other.nonfinite
        self.batches += other.batches
        self.zeros += other.zeros
        if other.counts is None or other.min_val is None:
            return
        src = other._state()
        if self.counts is None or self.min_val is None:
            self._adopt(src)
            return
        mine = self._state()
        if src.bin_width > mine.bin_width:  # keep the coarser grid exact
            src, mine = mine, src
            self._adopt(mine)
        self._cover(min(src.min_val, mine.min_val), max(src.max_val, mine.max_val))
        if src.bin_width == 0 or src.min_val == src.max_val:
            self._add_point(src.min_val, float(src.counts.sum()))
        else:
            src_edges = src.hist_min + src.bin_width * np.arange(self.bins + 1, dtype=np.float64)
            src_edges = np.clip(src_edges, src.min_val, src.max_val)
            cum = np.concatenate(([0.0], np.cumsum(src.counts)))
            spread = np.diff(np.interp(self.edges, src_edges, cum))
            assert self.counts is not None
            self.counts += np.maximum(spread, 0.0)
        self._set_range(src.min_val, src.max_val)

    # -- ranges and qparams ------------------------------------------------------------------

    def range_for(
        self, method: str | None = None, dtype: str = "int8", **options: float
    ) -> tuple[float, float]:
        """``(rmin, rmax)`` chosen by ``method`` (default: ``self.method``) for ``dtype``.

        Args:
            method: "minmax", "percentile", "entropy" or "mse".
            dtype: the quantized dtype the range is for ("int8", "uint8", "int4", ...).
            **options: the method's keyword options, e.g. ``percentile=99.99``.

        Returns:
            Finite floats ``rmin <= rmax`` inside the observed ``[min, max]``.
        """
        method = self.method if method is None else method
        if method not in RANGE_METHODS:
            raise QuantaError(
                f"calibration method {method!r} is not known; expected one of {list(RANGE_METHODS)}"
            )
        qrange(dtype)  # a bad dtype fails here, with the list of good ones
        fn = RANGE_METHODS[method]
        accepted = {
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        takes_zeros = "zero_count" in accepted
        accepted.discard("zero_count")  # the observer's own count, not a user option
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise QuantaError(
                f"calibration method {method!r} has no option {', '.join(unknown)}; "
                f"it accepts {sorted(accepted) or 'no options'}"
            )
        if "percentile" in accepted:
            options.setdefault("percentile", self.percentile)
        if takes_zeros:
            options["zero_count"] = self.zeros
        counts, edges = self.histogram()
        lo, hi = fn(counts, edges, dtype, **options)
        data_lo, data_hi = (float(v) for v in self.range())
        lo = min(max(float(lo), data_lo), data_hi)
        hi = min(max(float(hi), lo), data_hi)
        return lo, hi

    def qparams(
        self,
        dtype: str = "int8",
        *,
        symmetric: bool = False,
        method: str | None = None,
        **options: float,
    ) -> QParams:
        """``choose_qparams`` of ``range_for(method, dtype, **options)``.

        The methods optimise the asymmetric (activation) grid; ``symmetric=True`` then takes
        ``max(|rmin|, |rmax|)`` of that range, as ``choose_qparams`` does.
        """
        lo, hi = self.range_for(method, dtype, **options)
        return choose_qparams(lo, hi, dtype, symmetric=symmetric)
