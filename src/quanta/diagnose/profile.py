"""Measured time per op type, from ONNX Runtime's own profiler (the kernels it really ran)."""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

__all__ = ["OpTimes", "profile_op_times"]


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
    with tempfile.TemporaryDirectory(prefix="quanta-profile-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        session.run(None, dict(feeds))  # warm-up, excluded below
        for _ in range(runs):
            session.run(None, dict(feeds))
        events = json.loads(Path(session.end_profiling()).read_text())
    per_run: list[dict[str, float]] = []
    nodes: dict[str, set[str]] = defaultdict(set)
    current: dict[str, float] | None = None
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            current = defaultdict(float)
            per_run.append(current)
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name", "?")
        nodes[op].add(event["name"])
        if current is None:
            current = defaultdict(float)
            per_run.append(current)
        current[op] += event.get("dur", 0) / 1000.0
    # model_run events close a run, so kernels come before their run's marker: drop the
    # warm-up by taking the last ``runs`` groups of kernel times
    measured = [r for r in per_run if r][-runs:]
    ops = sorted({op for r in measured for op in r})
    ms = {op: float(np.mean([r.get(op, 0.0) for r in measured])) for op in ops}
    return OpTimes(ms, {op: len(nodes[op]) for op in ops}, len(measured))
