"""Entropy calibration: TensorRT's KL-divergence range search, generalised to asymmetric ranges.

TensorRT (and pytorch-quantization, ONNX Runtime after it) histograms ``|x|``, and for each
threshold ``T`` of ``i`` bins folds the mass beyond ``T`` into the last bin (P), merges the ``i``
bins into 128 levels, spreads each level's mass uniformly over its non-empty bins (Q), and keeps
the ``T`` with the least ``KL(P || Q)``. Here the histogram is signed and a candidate is a pair
``[a, b]`` of bin edges: P folds the mass below ``a`` into the first bin and above ``b`` into the
last; Q groups the bins by the level of the grid ``choose_qparams(a, b, dtype)`` really builds
(a bin belongs to the level its centre rounds to, ``qmax - qmin + 1`` levels), and is built from
the unfolded counts, as TensorRT's, so clipping mass costs KL.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from quanta.quant._calib_search import (
    Floats,
    Ints,
    checked_histogram,
    grid,
    in_chunks,
    levels,
    search,
    sides,
    without_zeros,
)
from quanta.quant.qparams import qrange

__all__ = ["entropy_range"]

# NOTE: a level of Q with no unfolded mass but with clipped mass folded into it (outliers
# folded into an empty edge bin) would make KL infinite; TensorRT smooths Q with eps = 1e-4 of
# the total. We give each such bin half a count instead: clipping m values into an empty
# region then costs about (m / N) log(2 m), small for a few outliers, large for real mass.
_PSEUDO_COUNT = 0.5


def _xlogx(v: Floats) -> Floats:
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


def _kl(c: Floats, e: Floats, zeros: float, dtype: str, s: Ints, t: Ints) -> Floats:
    """``KL(P || Q)`` of each candidate ``[e[s], e[t]]`` (bins ``s .. t - 1``), O(levels) each.

    With P and Q normalised, ``KL = sum P log P / N - log N - sum_g G_g log(Q_g / nz_g) / N
    + log N_in``, where a level ``g`` has folded mass ``G_g``, unfolded mass ``Q_g`` and ``nz_g``
    non-empty bins of P; every term comes from prefix sums at the levels' bin boundaries.
    ``zeros`` exact zeros are one more bin, exact in Q: they only enter N and N_in.
    """
    n = s.size
    rows = np.arange(n)
    total = c.sum() + zeros
    cum = np.concatenate(([0.0], np.cumsum(c)))
    cum_nz = np.concatenate(([0], np.cumsum(c > 0)))
    cum_xlogx = np.concatenate(([0.0], np.cumsum(_xlogx(c))))
    centres = (e[:-1] + e[1:]) / 2

    _, cut = levels(*grid(e[s], e[t], dtype), dtype)  # (n, L - 1) rounding boundaries
    # a bin belongs to the level its centre rounds to: the first bin above each boundary
    inner = np.searchsorted(centres, cut.ravel(), side="left").reshape(cut.shape)
    inner = np.clip(inner, s[:, None], t[:, None])
    bounds = np.concatenate((s[:, None], inner, t[:, None]), axis=1)  # (n, levels + 1)
    n_levels = bounds.shape[1] - 1

    q_mass = np.diff(cum[bounds], axis=1)  # (n, levels): unfolded mass per level
    nz = np.diff(cum_nz[bounds], axis=1).astype(np.float64)
    below, above = cum[s], cum[-1] - cum[t]
    first = (bounds[:, :n_levels] <= s[:, None]).sum(axis=1) - 1  # the level holding bin s
    last = (bounds[:, :n_levels] <= (t - 1)[:, None]).sum(axis=1) - 1  # ... and bin t - 1
    g_mass = q_mass.copy()
    g_mass[rows, first] += below
    g_mass[rows, last] += above
    # a folded edge bin that was empty becomes a non-empty bin of P
    single = s == t - 1
    grow_first = (c[s] == 0) & (below > 0)
    grow_last = (c[t - 1] == 0) & (above > 0) & ~(single & grow_first)
    nz[rows, first] += grow_first
    nz[rows, last] += grow_last

    p_first = c[s] + below + np.where(single, above, 0.0)
    p_last = np.where(single, 0.0, c[t - 1] + above)
    edge_old = _xlogx(c[s]) + np.where(single, 0.0, _xlogx(c[t - 1]))
    plogp = cum_xlogx[t] - cum_xlogx[s] - edge_old + _xlogx(p_first) + _xlogx(p_last)

    used = g_mass > 0
    empty = used & (q_mass <= 0)
    q_mass = np.where(empty, _PSEUDO_COUNT * nz, q_mass)
    log_q = np.log(np.where(used, q_mass, 1.0)) - np.log(np.where(used, nz, 1.0))
    plogq = np.where(used, g_mass * log_q, 0.0).sum(axis=1)
    inside = cum[t] - cum[s] + zeros + np.where(empty, q_mass, 0.0).sum(axis=1)
    kl = (plogp - plogq) / total - np.log(total) + np.log(inside)
    return np.where(np.isfinite(kl), kl, np.inf)


def entropy_range(
    counts: npt.ArrayLike,
    edges: npt.ArrayLike,
    dtype: str = "int8",
    *,
    zero_count: float = 0.0,
) -> tuple[float, float]:
    """The range ``[a, b]`` whose quantization loses the least information, ``min KL(P || Q)``.

    Only candidates whose grid step spans at least one bin are scored (as TensorRT starts at
    128 bins for 128 levels): finer grids than the histogram cannot be judged. With 2048 bins,
    int8's 256 levels leave ranges down to 1/8 of min-max; with fewer bins than levels (int16)
    no candidate qualifies and the result is min-max.

    Search: a non-negative tensor (ReLU) keeps ``a = min`` and searches the upper bound (256
    candidates geometric in the distance from zero, then refined); a two-sided one searches a
    32 x 32 grid of (lower, upper) edges geometric in the distance from zero, then a few 17 x 17
    refinements around the best: asymmetric ranges are found, and a short negative side is
    never dropped unless that is what minimises KL.

    Args:
        zero_count: how many of the values are exactly 0. They are kept out of the bin that
            holds 0 (a ReLU's spike would otherwise be smeared over its level and push the
            range down); quantization keeps them exact.
    """
    c, e = checked_histogram(counts, edges)
    if e[0] == e[-1]:
        return float(e[0]), float(e[-1])
    qmin, qmax = qrange(dtype)
    min_span = (qmax - qmin) * float(np.max(np.diff(e)))  # grid step >= one (full) bin
    if max(e[-1], 0.0) - min(e[0], 0.0) <= min_span:
        return float(e[0]), float(e[-1])
    rest = without_zeros(c, e, zero_count)
    zeros = float(c.sum() - rest.sum())
    if not rest.any():
        return float(e[0]), float(e[-1])

    def score(s: Ints, t: Ints) -> Floats:
        return _kl(rest, e, zeros, dtype, s, t)

    def objective(s: Ints, t: Ints) -> Floats:
        span = np.maximum(e[t], 0.0) - np.minimum(e[s], 0.0)
        out = np.full(s.size, np.inf)
        ok = np.flatnonzero((span >= min_span * (1 - 1e-9)) & (t > s))
        out[ok] = in_chunks(score, s[ok], t[ok], qmax - qmin + 1)
        return out

    lo_side, hi_side = sides(e)
    one_sided = lo_side[0] == lo_side[1] or hi_side[0] == hi_side[1]
    s, t = search(objective, lo_side, hi_side, coarse=256 if one_sided else 32)
    return float(e[s]), float(e[t])
