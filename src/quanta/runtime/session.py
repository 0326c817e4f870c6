"""ONNX Runtime sessions: the only place in quanta where they are made.

Two configurations, each used wherever its job comes up, so that a measurement and the number
it is compared with always run the same kernels:

- ``make_session``: every graph optimization, a fixed thread count. Latency, accuracy,
  fidelity, profiling, kernel counts, and ``run_model`` (the accuracy-aware fallback's and
  ``quanta inspect``'s quantize-one-node-alone runs).
- ``session_with_outputs``: basic optimizations only, on a copy of the model whose graph
  outputs also expose chosen intermediate tensors (calibration, diagnostics). Basic keeps those
  tensors as the float graph computes them; full optimization may fuse them away.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort

from quanta.errors import ModelError

__all__ = ["OptimizationLevel", "make_session", "run_model", "session_with_outputs"]

OptimizationLevel = Literal["disabled", "basic", "extended", "all"]

_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _options(
    level: OptimizationLevel | ort.GraphOptimizationLevel, threads: int
) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = _LEVELS[level] if isinstance(level, str) else level
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


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
    options = _options("all", threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
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


def run_model(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, batch_size: int = 256
) -> list[np.ndarray]:
    """All outputs of ``model`` on ``feeds`` with ONNX Runtime's full optimizations (1 thread),
    in calls the model accepts (its fixed batch, else ``batch_size`` samples), each output with
    its samples on axis 0 (``quanta.runtime.batching``)."""
    from quanta.runtime.batching import run_batched

    session = make_session(model.SerializeToString(), threads=1)
    return run_batched(session, feeds, batch_size=batch_size)


def session_with_outputs(
    model: onnx.ModelProto,
    names: Sequence[str],
    level: OptimizationLevel | ort.GraphOptimizationLevel = "basic",
    threads: int = 0,
) -> ort.InferenceSession:
    """A session on a copy of ``model`` whose graph outputs also include the float tensors
    ``names``, so that ONNX Runtime keeps and returns them (the caller's model is untouched).

    Args:
        level: graph optimizations (also ONNX Runtime's own ``GraphOptimizationLevel``).
        threads: intra-op threads; 0 is ONNX Runtime's default (all cores).
    """
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in existing:
            augmented.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    return ort.InferenceSession(
        augmented.SerializeToString(), _options(level, threads), providers=["CPUExecutionProvider"]
    )
