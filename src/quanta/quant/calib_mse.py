"""MSE calibration: the range whose quantization grid minimises the expected squared error."""

from __future__ import annotations

from collections.abc import Callable

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

__all__ = ["mse_range"]

# NOTE: above this many levels (int16, int32) the grid is finer than any histogram we keep, and
# the closed form S**2 / 12 + clipping replaces the level-by-level sum (65536 cells a candidate).
_MAX_CELLS = 1024

# (mass, sum of x, sum of x**2) of the data at or below each point
_Moments = Callable[[Floats], tuple[Floats, Floats, Floats]]


def _moments(c: Floats, e: Floats) -> _Moments:
    """``f(x)`` = (mass, sum of x, sum of x**2) of the data at or below ``x``, bins uniform inside.

    Prefix sums over whole bins plus the part of the bin holding ``x``: O(log B) per point.
    """
    w = np.diff(e)
    mid = (e[:-1] + e[1:]) / 2

    def prefix(v: Floats) -> Floats:
        return np.concatenate(([0.0], np.cumsum(v)))

    m0, m1, m2 = prefix(c), prefix(c * mid), prefix(c * (mid * mid + w * w / 12))
    last = c.size - 1

    def at(x: Floats) -> tuple[Floats, Floats, Floats]:
        j = np.clip(np.searchsorted(e, x, side="right") - 1, 0, last)
        lo, width = e[j], w[j]
        # the share of bin j at or below x; a zero-width bin is a point mass at its edge
        share = np.where(
            width > 0,
            np.clip((x - lo) / np.where(width > 0, width, 1.0), 0.0, 1.0),
            (x >= lo).astype(np.float64),
        )
        hi = lo + share * width
        mass = c[j] * share
        return (
            m0[j] + mass,
            m1[j] + mass * (lo + hi) / 2,
            m2[j] + mass * (lo * lo + lo * hi + hi * hi) / 3,
        )

    return at


def mse_range(
    counts: npt.ArrayLike,
    edges: npt.ArrayLike,
    dtype: str = "int8",
    *,
    zero_count: float = 0.0,
) -> tuple[float, float]:
    """The range ``[a, b]`` whose grid gives the least expected squared error on the histogram.

    A candidate's grid is the one ``choose_qparams(a, b, dtype)`` builds (widened to 0, zero
    point rounded). Every value goes to its nearest level, values beyond the grid to the end
    level (clipping), so the error is, level by level,
    ``sum (x - v_q)**2 = M2 - 2 v_q M1 + v_q**2 M0`` over the cell of values that round to
    ``v_q``, from prefix moments of the histogram (mass uniform inside each bin). This is
    ``S**2 / 12`` per value inside the range plus the squared clipping error outside when the
    density is smooth at the scale of ``S``, and stays right when it is not (a narrow body
    beside far outliers rounds to 0, an error of ``x**2``, not ``S**2 / 12``). Grids of more
    than 1024 levels (int16) use that closed form, exact there for mass uniform inside a bin.

    Candidates are bin edges: the upper bound alone for a one-sided tensor (256 geometric in
    the distance from zero, then refined), else a 32 x 32 grid of (lower, upper) bounds
    geometric in the distance from zero, then a few 17 x 17 refinements around the best.

    Args:
        zero_count: how many of the values are exactly 0 (represented exactly: no error).
    """
    c, e = checked_histogram(counts, edges)
    if e[0] == e[-1]:
        return float(e[0]), float(e[-1])
    objective = _objective(e, _moments(without_zeros(c, e, zero_count), e), dtype)
    lo_side, hi_side = sides(e)
    one_sided = lo_side[0] == lo_side[1] or hi_side[0] == hi_side[1]
    s, t = search(objective, lo_side, hi_side, coarse=256 if one_sided else 32)
    return float(e[s]), float(e[t])


def _objective(e: Floats, moments: _Moments, dtype: str) -> Callable[[Ints, Ints], Floats]:
    """``f(s, t)``: the expected squared error of each candidate range ``[e[s], e[t]]``."""
    qmin, qmax = qrange(dtype)
    total = moments(np.array([np.inf]))

    def score(s: Ints, t: Ints) -> Floats:
        scale, zp = grid(e[s], e[t], dtype)
        if qmax - qmin + 1 > _MAX_CELLS:
            return _closed_form_error(
                moments, total, scale, scale * (qmin - zp), scale * (qmax - zp)
            )
        level, cuts = levels(scale, zp, dtype)  # (n, L), (n, L - 1)
        return _level_error(moments, total, level, cuts)

    def objective(s: Ints, t: Ints) -> Floats:
        return in_chunks(score, s, t, qmax - qmin + 1 if qmax - qmin < _MAX_CELLS else 1)

    return objective


def _level_error(
    moments: _Moments, total: tuple[Floats, Floats, Floats], level: Floats, cuts: Floats
) -> Floats:
    """Level by level, ``M2 - 2 v_q M1 + v_q**2 M0`` over the cell that rounds to ``v_q``."""
    p0, p1, p2 = moments(cuts)
    n = level.shape[0]
    zero = np.zeros((n, 1))

    def cells(p: Floats, end: Floats) -> Floats:  # (n, L): the sum inside each level's cell
        return np.diff(np.concatenate((zero, p, np.broadcast_to(end, (n, 1))), axis=1))

    d0, d1, d2 = cells(p0, total[0]), cells(p1, total[1]), cells(p2, total[2])
    err = d2 - 2 * level * d1 + level * level * d0
    return np.maximum(err, 0.0).sum(axis=1)


def _closed_form_error(
    moments: _Moments,
    total: tuple[Floats, Floats, Floats],
    scale: Floats,
    lo: Floats,
    hi: Floats,
) -> Floats:
    # more levels than bins (int16): S**2 / 12 inside is exact for mass uniform in a bin
    b0, b1, b2 = moments(lo)
    a0, a1, a2 = (tot - m for tot, m in zip(total, moments(hi), strict=True))
    below = np.maximum(b2 - 2 * lo * b1 + lo * lo * b0, 0.0)
    above = np.maximum(a2 - 2 * hi * a1 + hi * hi * a0, 0.0)
    return scale * scale / 12 * (total[0] - b0 - a0) + below + above
