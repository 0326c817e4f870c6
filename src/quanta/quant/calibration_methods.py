"""Range selection from a histogram: min-max, percentile, entropy (KL) and MSE.

Each method is a pure function ``f(counts, edges, dtype, **options) -> (rmin, rmax)`` of a signed
histogram (``counts`` (B,), increasing ``edges`` (B + 1,), mass uniform inside each bin) and the
quantized dtype (its ``qrange``). The result is finite, ``rmin <= rmax``, inside the data's range,
and meant for ``choose_qparams`` (which widens it to include 0). ``RANGE_METHODS`` maps the names
``HistogramObserver.range_for`` accepts onto them. Methods that score a grid (entropy, mse) also
take ``zero_count``, the number of exact zeros, which quantization keeps exact.

Example:
    >>> import numpy as np
    >>> counts, edges = np.array([1.0, 98.0, 1.0]), np.array([-100.0, -1.0, 1.0, 100.0])
    >>> minmax_range(counts, edges)
    (-100.0, 100.0)
    >>> percentile_range(counts, edges, percentile=99.0)
    (-1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from quanta.errors import QuantaError
from quanta.quant._calib_search import checked_histogram
from quanta.quant.calib_entropy import entropy_range
from quanta.quant.calib_mse import mse_range

__all__ = ["RANGE_METHODS", "entropy_range", "minmax_range", "mse_range", "percentile_range"]


def minmax_range(
    counts: npt.ArrayLike, edges: npt.ArrayLike, dtype: str = "int8"
) -> tuple[float, float]:
    """The full range of the data: the outer edges of the first and last non-empty bins.

    ``HistogramObserver`` clips its edges to the exact observed min and max, so this is exact.
    """
    _, e = checked_histogram(counts, edges)
    return float(e[0]), float(e[-1])


def percentile_range(
    counts: npt.ArrayLike,
    edges: npt.ArrayLike,
    dtype: str = "int8",
    *,
    percentile: float = 99.999,
) -> tuple[float, float]:
    """Cut each tail of the signed distribution separately: the ``[100 - p, p]`` % quantiles.

    Quantiles interpolate linearly inside a bin. A non-negative tensor (ReLU) keeps
    ``rmin = min`` (its lower tail is not an outlier tail), a non-positive one keeps ``rmax``.

    Args:
        percentile: the upper quantile in percent, in [50, 100]; 100 is min-max.
    """
    if not 50.0 <= percentile <= 100.0:
        raise QuantaError(f"percentile must be in [50, 100] (e.g. 99.999), got {percentile}")
    c, e = checked_histogram(counts, edges)
    cum = np.concatenate(([0.0], np.cumsum(c)))
    total = cum[-1]
    keep = percentile / 100.0
    taus = np.array([total * (1.0 - keep), total * keep])
    j = np.clip(np.searchsorted(cum, taus, side="left") - 1, 0, c.size - 1)
    frac = np.clip((taus - cum[j]) / c[j], 0.0, 1.0)  # c[j] > 0: cum[j] < tau <= cum[j + 1]
    lo, hi = e[j] + frac * (e[j + 1] - e[j])
    if e[0] >= 0:
        lo = e[0]
    if e[-1] <= 0:
        hi = e[-1]
    return float(lo), float(max(hi, lo))


RangeMethod = Callable[..., tuple[float, float]]

RANGE_METHODS: dict[str, RangeMethod] = {
    "minmax": minmax_range,
    "percentile": percentile_range,
    "entropy": entropy_range,
    "mse": mse_range,
}
