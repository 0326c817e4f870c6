"""Measured time per op type, from ONNX Runtime's own profiler (the kernels it really ran)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from quanta.runtime.session import make_session

__all__ = ["OpTimes", "profile_node_times", "profile_op_times"]


@dataclass(frozen=True)
class OpTimes:
    """Mean milliseconds per run spent in each op type (after ONNX Runtime's fusions), and how
    many nodes of each type ran."""

    ms: dict[str, float]
    nodes: dict[str, int]
    runs: int

    @property
    def total_ms(self) -> float:
        return sum(self.ms.values())


def profile_op_times(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, runs: int = 30, threads: int = 1
) -> OpTimes:
    """Run ``model`` ``runs`` times on ``feeds`` (after one warm-up) with profiling on and sum
    each op type's kernel time per run."""
    measured = _profile_events(model, feeds, runs=runs, threads=threads)[-runs:]
    per_op: list[dict[str, float]] = []
    nodes: dict[str, set[str]] = defaultdict(set)
    for run in measured:
        totals: dict[str, float] = defaultdict(float)
        for (name, op), kernel_ms in run.items():
            totals[op] += kernel_ms
            nodes[op].add(name)
        per_op.append(totals)
    ops = sorted({op for r in per_op for op in r})
    ms = {op: float(np.mean([r.get(op, 0.0) for r in per_op])) for op in ops}
    return OpTimes(ms, {op: len(nodes[op]) for op in ops}, len(measured))


_SUFFIX = re.compile(r"(_token_\d+|_nchwc|_kernel_time)+$")


def profile_node_times(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, runs: int = 20, threads: int = 1
) -> dict[str, float]:
    """Mean milliseconds per run of each node ONNX Runtime ran, keyed by the name it profiles
    under with its suffixes removed: a fused int8 node keeps the original node's name
    (``node_Conv_818_token_50`` -> ``node_Conv_818``); a float NCHWc convolution is named after
    its output (``hardtanh_nchwc`` -> ``hardtanh``)."""
    events = _profile_events(model, feeds, runs=runs, threads=threads)
    totals: dict[str, float] = defaultdict(float)
    for event in events[-runs:]:
        for (name, _op), ms in event.items():
            totals[_SUFFIX.sub("", name)] += ms
    n = max(1, min(runs, len(events)))
    return {name: ms / n for name, ms in totals.items()}


def _profile_events(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, runs: int, threads: int
) -> list[dict[tuple[str, str], float]]:
    """Per run (warm-up first), kernel milliseconds by (profiled node name, op type)."""
    with tempfile.TemporaryDirectory(prefix="quanta-profile-") as tmp:
        session = make_session(
            model.SerializeToString(), threads=threads, profile_prefix=os.path.join(tmp, "p")
        )
        for _ in range(runs + 1):
            session.run(None, dict(feeds))
        events = json.loads(Path(session.end_profiling()).read_text())
    per_run: list[dict[tuple[str, str], float]] = [defaultdict(float)]
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            per_run.append(defaultdict(float))  # model_run closes a run: its kernels came first
        elif event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            per_run[-1][(event["name"], op)] += event.get("dur", 0) / 1000.0
    return [r for r in per_run if r]
