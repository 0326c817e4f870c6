"""ONNX Runtime and LiteRT: sessions, accuracy, latency, file size, profiles, and the kernels
that really ran. The only package that makes sessions."""

from __future__ import annotations

from quanta.runtime.bench import BenchResult, EvalSet, bench_models, feeds_for
from quanta.runtime.fidelity import Fidelity, fidelity, mean_cosine
from quanta.runtime.kernels import INTEGER_OPS, KernelCounts, count_kernels
from quanta.runtime.machine import describe_machine
from quanta.runtime.measure import Latency, accuracy, interleaved_latency, predict
from quanta.runtime.profile import OpTimes, profile_node_times, profile_op_times
from quanta.runtime.session import make_session, run_model, session_with_outputs

__all__ = [
    # top level API
    "EvalSet",
    "BenchResult",
    "bench_models",
    "make_session",
    "count_kernels",
    "describe_machine",
    "fidelity",
    "profile_op_times",
    # building blocks
    "feeds_for",
    "Fidelity",
    "INTEGER_OPS",
    "KernelCounts",
    "Latency",
    "accuracy",
    "interleaved_latency",
    "predict",
    "OpTimes",
    "mean_cosine",
    "profile_node_times",
    "run_model",
    "session_with_outputs",
]
