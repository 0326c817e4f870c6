"""The per-position arg-max agreement a quantized model can be *expected* to keep.

Counting the positions whose arg-max changed is an unbiased but coarse reading: a target of
``1 - 0.05 / T`` allows about one changed position per 20 samples, so on the 24 held-out samples
of a 40-step tagger (lac_gru) one flip more or less decides the verdict. On lac_gru the int8
model changed 1 of 960 held-out positions (agreement 0.9990, target 0.99875: "met") while it
changes 22 of 7,680 evaluation positions (0.9971) and the tag sequence of 18 of 192 sentences.

What flips a position is a change of the reference best class's lead over a rival. Each
class's score moves by an error whose spread ``s`` is read from the leads' changes at *every*
position, not only at the few near a tie, so it is well measured on few samples; the leads are
the reference's own. A change common to every position (a constant shift of one rival's score)
moves the lead for certain; around it, each class's error is taken as normal of spread ``s``,
independent of the others'. The best class then keeps its place at a position with probability
``E_u[Π_c Φ(l_c / s + u)]`` (``l_c``: its lead over rival ``c`` after the common shift; ``u``:
its own error over ``s``), and the expected agreement is the mean over positions.

On lac_gru's int8 model it reads 27.0 expected changes of the 7,680 evaluation positions where
22 happened, and on each eighth of them (24 samples, as held out) between 0.9949 and 0.9980
(target 0.99875), where counting read between 0.9938 and 0.9990.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["RIVALS", "expected_argmax_agreement"]

# classes after the reference's best that could take its place; beyond the third, a rival was
# never within reach on the corpus's sequence models
RIVALS = 3
NODES = 24  # quadrature points over the best class's own error


def expected_argmax_agreement(
    outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]
) -> float:
    """Mean over positions of the probability that the best class keeps its lead over each of
    the next ``RIVALS`` (module docstring), pooled over ``outputs``:
    each index of the other axes than the last (class) axis is one position, ``c`` runs over the
    reference's ``RIVALS`` classes after its best; 1.0 when the outputs equal the reference
    or there is no position."""
    margins, changes = [], []
    for out, ref in zip(outputs, reference, strict=True):
        c = np.asarray(ref).shape[-1]
        r = np.asarray(ref, np.float64).reshape(-1, c)  # (P, C)
        q = np.asarray(out, np.float64).reshape(-1, c)
        k = min(RIVALS, c - 1)
        order = np.argsort(-r, axis=1, kind="stable")[:, : k + 1]  # (P, k + 1): best first
        rs, qs = np.take_along_axis(r, order, 1), np.take_along_axis(q, order, 1)
        m = rs[:, :1] - rs[:, 1:]  # (P, k): the best's lead over each rival
        margins.append(m)
        changes.append(qs[:, :1] - qs[:, 1:] - m)
    if not margins or not sum(len(m) for m in margins):
        return 1.0
    m, d = np.concatenate(margins), np.concatenate(changes)
    if m.shape[1] == 0:
        return 1.0
    # NOTE: a lead's change that is the same at every position (a constant shift of one
    # rival's score) is no noise: it moves the lead for certain, and only the rest is spread
    shift = d.mean(axis=0)  # (k,): per rival rank
    lead = m + shift  # (P, k)
    # each class's score moves by its own error of spread s, so a lead's change spreads s·√2
    s = float(np.sqrt(np.mean((d - shift) ** 2) / 2.0))
    if s == 0.0:
        return float(np.mean(np.all(lead > 0, axis=1)))
    # P(keep) = E_u[Π_c Φ(lead_c / s + u)], u ~ N(0, 1) the best class's own error over s:
    # Gauss-Hermite quadrature over u (exact for polynomials of degree < 2 · NODES)
    u, w = np.polynomial.hermite_e.hermegauss(NODES)  # weight exp(-u²/2)
    w = w / w.sum()
    z = lead[:, :, None] / s + u[None, None, :]  # (P, k, NODES)
    return float(np.mean(np.prod(_phi(z), axis=1) @ w))


_erfc = np.frompyfunc(math.erfc, 1, 1)


def _phi(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF, elementwise (NumPy has no erf)."""
    return 0.5 * np.asarray(_erfc(-z / math.sqrt(2.0)), np.float64)
