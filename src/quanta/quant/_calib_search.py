"""Shared pieces of the histogram range methods: input checks, the grid, the candidate search.

A histogram here is ``counts`` (B,) and increasing ``edges`` (B + 1,); the mass of bin ``j`` is
spread uniformly over ``[edges[j], edges[j + 1]]`` (a bin of zero width is a point mass).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from quanta.errors import QuantaError
from quanta.quant.qparams import choose_qparams, qrange

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]

# NOTE: candidates are scored in chunks so that the (candidates, levels) arrays stay ~32 MB.
_CHUNK_ELEMENTS = 1 << 22


def checked_histogram(counts: npt.ArrayLike, edges: npt.ArrayLike) -> tuple[Floats, Floats]:
    """Validate, convert to float64, and drop the empty bins at both ends."""
    c = np.asarray(counts, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or e.shape != (c.size + 1,):
        raise QuantaError(
            f"histogram needs counts of shape (B,) and edges of shape (B + 1,), "
            f"got {c.shape} and {e.shape}"
        )
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(e))):
        raise QuantaError("histogram counts and edges must be finite")
    if np.any(c < 0) or np.any(np.diff(e) < 0):
        raise QuantaError("histogram counts must be >= 0 and edges non-decreasing")
    nonzero = np.flatnonzero(c)
    if nonzero.size == 0:
        raise QuantaError("histogram is empty; feed the observer at least one calibration batch")
    first, last = int(nonzero[0]), int(nonzero[-1])
    return c[first : last + 1], e[first : last + 2]


def without_zeros(c: Floats, e: Floats, zero_count: float) -> Floats:
    """``c`` less ``zero_count`` exact zeros, taken out of the bin that holds 0.

    Exact zeros (ReLU's spike, zero padding) are represented exactly by every grid
    ``choose_qparams`` builds: they add no error, and must not be smeared over their bin.
    """
    if zero_count < 0 or not np.isfinite(zero_count):
        raise QuantaError(f"zero_count must be a finite count >= 0, got {zero_count}")
    if zero_count == 0 or not e[0] <= 0.0 <= e[-1]:
        return c
    j = min(max(int(np.searchsorted(e, 0.0, side="right")) - 1, 0), c.size - 1)
    out = c.copy()
    out[j] = max(out[j] - zero_count, 0.0)
    return out


def grid(a: Floats, b: Floats, dtype: str) -> tuple[Floats, Floats]:
    """Scale and zero point (as floats) of the grid ``choose_qparams`` builds for each ``[a, b]``.

    Calls the one ``choose_qparams`` (vectorised through ``axis=0``) so that every method scores
    exactly the grid the model will use: widened to 0, zero point rounded. Level ``q`` is the
    real value ``S * (q - Z)``; values between two levels round at ``S * (q - Z + 0.5)``.
    """
    qp = choose_qparams(a, b, dtype, axis=0)
    return qp.scale.astype(np.float64), qp.zero_point.astype(np.float64)


def levels(scale: Floats, zp: Floats, dtype: str) -> tuple[Floats, Floats]:
    """The real levels (n, L) and the rounding cuts between neighbours (n, L - 1) of each grid."""
    qmin, qmax = qrange(dtype)
    q = np.arange(qmin, qmax + 1, dtype=np.float64) - zp[:, None]
    return scale[:, None] * q, scale[:, None] * (q[:, :-1] + 0.5)


def in_chunks(score: Callable[[Ints, Ints], Floats], s: Ints, t: Ints, width: int) -> Floats:
    """``score(s, t)`` in chunks of candidates, so that (candidates, width) arrays stay small."""
    chunk = max(1, _CHUNK_ELEMENTS // (width + 1))
    out = np.empty(s.size)
    for i in range(0, s.size, chunk):
        out[i : i + chunk] = score(s[i : i + chunk], t[i : i + chunk])
    return out


def _spread(lo: int, hi: int, k: int) -> Ints:
    """About ``k`` distinct integers from ``lo`` to ``hi`` (both included), evenly spaced."""
    return np.unique(np.rint(np.linspace(lo, hi, min(k, hi - lo + 1))).astype(np.intp))


def _geometric(origin: int, far: int, k: int) -> Ints:
    """Indices from ``origin`` towards ``far``, dense near ``origin`` (geometric distances).

    Clipping ranges that matter sit close to zero for heavy tails and close to the extremes for
    light ones: geometric steps in the distance from zero cover both with few candidates.
    """
    n = abs(far - origin)
    if n + 1 <= k:
        d = np.arange(n + 1)
    else:
        d = np.unique(np.concatenate(([0], np.rint(np.geomspace(1, n, k - 1)).astype(np.intp))))
    return np.sort(origin + np.sign(far - origin) * d).astype(np.intp)


def search(
    objective: Callable[[Ints, Ints], Floats],
    lo_side: tuple[int, int],
    hi_side: tuple[int, int],
    *,
    coarse: int,
    fine: int = 17,
    rounds: int = 4,
) -> tuple[int, int]:
    """Minimise ``objective(s, t)`` over edge-index pairs, coarse to fine.

    ``lo_side = (origin, far)``: lower-bound indices run from ``origin`` (the edge next to zero)
    to ``far`` (the data's minimum); likewise ``hi_side``. Round 0 scores a grid geometric in the
    distance from zero (``coarse`` per side); each of up to ``rounds - 1`` later rounds scores
    ``fine`` evenly spaced indices per side between the best one's neighbours, until they are
    adjacent. Ties go to the first candidate (the widest lower bound).
    """
    los = _geometric(*lo_side, coarse)
    his = _geometric(*hi_side, coarse)
    best = (np.inf, int(los[0]), int(his[-1]))
    for _ in range(rounds):
        s, t = np.meshgrid(los, his, indexing="ij")  # (len(los), len(his))
        values = objective(s.ravel(), t.ravel())
        k = int(np.argmin(values))
        i, j = (int(v) for v in np.unravel_index(k, s.shape))
        if values[k] < best[0]:
            best = (float(values[k]), int(los[i]), int(his[j]))
        # the next round: between the best one's neighbours, the best one included
        new_los = _spread(int(los[max(i - 1, 0)]), int(los[min(i + 1, los.size - 1)]), fine)
        new_his = _spread(int(his[max(j - 1, 0)]), int(his[min(j + 1, his.size - 1)]), fine)
        new_los, new_his = np.union1d(new_los, los[i : i + 1]), np.union1d(new_his, his[j : j + 1])
        if np.array_equal(new_los, los) and np.array_equal(new_his, his):
            break
        los, his = new_los, new_his
    if not np.isfinite(best[0]):  # nothing scored finite: keep the full range
        return int(min(lo_side)), int(max(hi_side))
    return best[1], best[2]


def sides(e: Floats) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(origin, far)`` of the lower and upper bound's edge indices for ``search``.

    A non-negative tensor (ReLU) keeps its minimum (the lower side is the single index 0); a
    non-positive one keeps its maximum; otherwise each side runs from the edge next to zero out
    to the extreme, so the negative side is searched, never assumed away.
    """
    last = e.size - 1
    if e[0] >= 0:
        return (0, 0), (min(1, last), last)
    if e[-1] <= 0:
        return (max(last - 1, 0), 0), (last, last)
    below = int(np.searchsorted(e, 0.0, side="right")) - 1  # last edge <= 0
    above = int(np.searchsorted(e, 0.0, side="left"))  # first edge >= 0
    return (below, 0), (above, last)
