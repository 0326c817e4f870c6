"""ONNX Runtime: sessions, accuracy, latency, file size, and the kernels that really ran."""

from __future__ import annotations

from quanta.runtime.bench import BenchResult, EvalSet, bench_models, feeds_for
from quanta.runtime.fidelity import Fidelity, fidelity
from quanta.runtime.kernels import INTEGER_OPS, KernelCounts, count_kernels
from quanta.runtime.machine import describe_machine
from quanta.runtime.measure import Latency, accuracy, interleaved_latency, predict
from quanta.runtime.session import make_session

__all__ = [
    # top level API
    "EvalSet",
    "BenchResult",
    "bench_models",
    "make_session",
    "count_kernels",
    "describe_machine",
    "fidelity",
    # building blocks
    "feeds_for",
    "Fidelity",
    "INTEGER_OPS",
    "KernelCounts",
    "Latency",
    "accuracy",
    "interleaved_latency",
    "predict",
]
