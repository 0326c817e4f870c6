"""ONNX Runtime sessions, configured the same way for every measurement."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from quanta.errors import ModelError

__all__ = ["make_session"]


def make_session(
    model: str | os.PathLike[str] | bytes,
    *,
    threads: int = 1,
    optimized_path: str | os.PathLike[str] | None = None,
    profile_prefix: str | os.PathLike[str] | None = None,
) -> ort.InferenceSession:
    """A CPU session with all graph optimizations, ``threads`` intra-op threads, one inter-op.

    Args:
        model: a path or serialized model bytes.
        threads: intra-op threads (1 gives the most repeatable latency).
        optimized_path: where ONNX Runtime writes the graph it actually runs (to count the kernels).
        profile_prefix: turn ONNX Runtime's profiler on, writing to files with this prefix.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if optimized_path is not None:
        options.optimized_model_filepath = os.fspath(optimized_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = os.fspath(profile_prefix)
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = str(exc).strip().splitlines()[0]
        where = "the model" if isinstance(model, bytes) else repr(str(Path(model)))
        raise ModelError(f"ONNX Runtime cannot load {where}: {first}") from exc
