"""How closely a quantized model reproduces its float reference, output by output.

- top-1 agreement: share of samples whose argmax (over the last axis) is the same; also on the
  samples where the reference is *confident* (top-1 probability >= 0.5: the softmax of logits,
  or the output itself when it already is a probability), where a disagreement is a real
  change of answer rather than a coin toss between near-equal classes;
- cosine similarity per sample (mean and minimum), for embeddings and logits alike;
- maximum absolute error;
- SQNR in dB: ``10 log10(sum(ref^2) / sum((out - ref)^2))`` over the whole output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine; two all-zero rows agree (1.0), one all-zero row against another does not
    (0.0): an output that collapsed to zero must never look perfect."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-300)
    return np.where(both_zero, 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))


def mean_cosine(
    outputs: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    *,
    batch_axes: Sequence[int] | None = None,
) -> float:
    """Mean over outputs of the mean per-sample cosine similarity (1.0 for identical).

    Samples lie on axis 0 (as ``run_model`` returns them), or on ``batch_axes[k]`` for output
    ``k`` (e.g. 1 for a ``(T, N, C)`` sequence); each sample's values are one vector.
    """
    scores = []
    for k, (out, ref) in enumerate(zip(outputs, reference, strict=True)):
        axis = batch_axes[k] if batch_axes is not None else 0
        a = np.moveaxis(np.asarray(out, np.float64), axis, 0)
        b = np.moveaxis(np.asarray(ref, np.float64), axis, 0)
        if a.shape != b.shape:
            raise ValueError(
                f"output {k} has shape {a.shape} and its reference {b.shape} (samples first); "
                "expected the same shape"
            )
        cos = row_cosines(a.reshape(len(a), -1), b.reshape(len(b), -1))  # (N, D) each
        scores.append(float(cos.mean()))
    return float(np.mean(scores))


def argmax_agreement(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Share of positions whose argmax over the last (class) axis equals the reference's,
    pooled over ``outputs``: every index of the other axes is one position (for a ``(T, N, C)``
    sequence of class scores, each of the ``T * N`` steps)."""
    same = total = 0
    for k, (out, ref) in enumerate(zip(outputs, reference, strict=True)):
        a, b = np.asarray(out), np.asarray(ref)
        if a.shape != b.shape:
            raise ValueError(
                f"output {k} has shape {a.shape} and its reference {b.shape}; expected the same"
            )
        c = b.shape[-1]
        same += int((a.reshape(-1, c).argmax(1) == b.reshape(-1, c).argmax(1)).sum())
        total += b.size // c
    return same / total if total else 1.0


__all__ = [
    "Fidelity",
    "are_probabilities",
    "argmax_agreement",
    "fidelity",
    "mean_cosine",
    "row_cosines",
]


@dataclass(frozen=True)
class Fidelity:
    samples: int
    top1_agreement: float | None
    top1_agreement_confident: float | None
    confident_samples: int
    cosine_mean: float
    cosine_min: float
    max_abs_error: float
    sqnr_db: float

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: floats rounded to 6 digits, an infinite SQNR (identical outputs) as None."""
        out: dict[str, float | int | None] = {}
        for k, v in self.__dict__.items():
            if isinstance(v, float):
                out[k] = round(float(v), 6) if np.isfinite(v) else None
            else:
                out[k] = v
        return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def are_probabilities(rows: np.ndarray) -> bool:
    """Whether every row (N, D) is already a probability distribution: values in [0, 1] that
    sum to 1 (to float32 rounding), as a Softmax writes."""
    rows = np.asarray(rows, np.float64)
    if rows.size == 0 or rows.min() < 0.0 or rows.max() > 1.0:
        return False
    return bool(np.allclose(rows.sum(axis=1), 1.0, rtol=0.0, atol=1e-3))


def fidelity(
    output: np.ndarray,
    reference: np.ndarray,
    *,
    classifier: bool | None = None,
    probabilities: bool | None = None,
) -> Fidelity:
    """Compare ``output`` with ``reference`` (same shape, samples on axis 0).

    ``classifier`` (default: the last axis has more than one entry and the output is 2-D) adds
    the top-1 agreements. ``probabilities``: the outputs already are probabilities (written by
    Softmax or Sigmoid), so confidence is read from them, not from their softmax (default:
    rows in [0, 1] summing to 1).
    """
    out = np.asarray(output, np.float64).reshape(len(output), -1)  # (N, D)
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)  # (N, D)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from reference shape {ref.shape}")
    cos = row_cosines(out, ref)
    noise = float(((out - ref) ** 2).sum())
    signal = float((ref**2).sum())
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-300) / noise)
    if classifier is None:
        classifier = np.asarray(output).ndim == 2 and ref.shape[1] > 1
    top1 = top1_conf = None
    n_conf = 0
    if classifier:
        same = out.argmax(1) == ref.argmax(1)
        top1 = float(same.mean())
        if probabilities is None:
            probabilities = are_probabilities(ref)
        confident = (ref if probabilities else _softmax(ref)).max(axis=1) >= 0.5
        n_conf = int(confident.sum())
        top1_conf = float(same[confident].mean()) if n_conf else None
    return Fidelity(
        samples=len(out),
        top1_agreement=top1,
        top1_agreement_confident=top1_conf,
        confident_samples=n_conf,
        cosine_mean=float(cos.mean()),
        cosine_min=float(cos.min()),
        max_abs_error=float(np.abs(out - ref).max()),
        sqnr_db=sqnr,
    )
