"""Benchmark models side by side: file size, accuracy, latency, and the kernels that ran."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
import onnx
import onnxruntime as ort

from quanta.data.layout import layout_mismatch
from quanta.errors import DataError
from quanta.runtime.batching import fixed_batch
from quanta.runtime.fidelity import fidelity
from quanta.runtime.kernels import KernelCounts, count_kernels
from quanta.runtime.litert import LiteRTSession, is_tflite, tflite_kernels
from quanta.runtime.measure import Latency, accuracy, interleaved_latency, predict_all
from quanta.runtime.session import make_session

__all__ = ["EvalSet", "BenchResult", "bench_models", "feeds_for"]

# LiteRTSession answers the part of ONNX Runtime's session API that the measurements use.
Session: TypeAlias = ort.InferenceSession | LiteRTSession


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Evaluation inputs (one array per model input, samples on axis 0) and optional labels."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))


@dataclass
class BenchResult:
    name: str
    path: str
    size_bytes: int
    accuracy: float | None
    latency: dict[int, Latency]
    kernels: KernelCounts
    threads: int
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "accuracy": self.accuracy,
            "latency_ms": {
                str(b): {"p50": round(v.p50_ms, 4), "p90": round(v.p90_ms, 4), "runs": v.runs}
                for b, v in sorted(self.latency.items())
            },
            "int8_ops": dict(sorted(self.kernels.int8.items())),
            "ops": dict(sorted(self.kernels.all.items())),
            "threads": self.threads,
            **({"fixed_batch": self.extra["fixed_batch"]} if "fixed_batch" in self.extra else {}),
            **({"fidelity": self.extra["fidelity"]} if "fidelity" in self.extra else {}),
        }


def feeds_for(session, data: EvalSet) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Map the data's arrays onto the session's inputs, cast to the dtypes the session expects."""
    feeds = {}
    names = [i.name for i in session.get_inputs()]
    if len(names) == 1 and len(data.inputs) == 1 and names[0] not in data.inputs:
        # A lone array feeds a lone input whatever its key (e.g. MNIST images into "image").
        feeds[names[0]] = next(iter(data.inputs.values()))
    else:
        missing = [n for n in names if n not in data.inputs]
        if missing:
            raise DataError(
                f"evaluation data has arrays {sorted(data.inputs)}; the model needs {names}"
            )
        feeds = {n: data.inputs[n] for n in names}
    types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(int8)": np.int8}  # fmt: skip
    for i in session.get_inputs():
        want = types.get(i.type)
        value = feeds[i.name]
        dims = list(i.shape) if i.shape is not None else None
        if dims is not None and (
            value.ndim != len(dims)
            or any(
                isinstance(d, int) and k > 0 and d != n
                for k, (d, n) in enumerate(zip(dims, value.shape, strict=False))
            )
        ):
            expected = "(" + ", ".join(str(d) if isinstance(d, int) else "N" for d in dims) + ")"
            fixed = [d if isinstance(d, int) else None for d in dims]
            raise DataError(
                layout_mismatch("evaluation", i.name, value.shape, fixed)
                or f"evaluation array {i.name!r} has shape {value.shape}; the model's input "
                f"{i.name!r} expects {expected}"
            )
        if want is not None and np.dtype(want).kind == "f" and value.dtype.kind not in "fiub":
            raise DataError(f"evaluation array {i.name!r} holds {value.dtype}; expected numbers")
        if (
            want is not None
            and np.dtype(want).kind in "iu"
            and value.dtype.kind == "f"
            and want is not np.uint8
        ):
            raise DataError(
                f"evaluation array {i.name!r} holds {value.dtype}; the model's input {i.name!r} "
                f"takes {np.dtype(want)} (integers, e.g. token ids)"
            )
        if want is np.uint8 and value.dtype != np.uint8 and np.issubdtype(value.dtype, np.floating):
            # A uint8-input model (raw pixels) evaluated on [0, 1] float images.
            value = np.clip(np.rint(value * 255.0), 0, 255)
        if want is not None and value.dtype != want:
            value = value.astype(want)
        feeds[i.name] = value
    return feeds


def _is_classifier(name: str, value: np.ndarray, data: EvalSet) -> bool:
    if value.ndim != 2 or value.shape[1] < 2:
        return False
    lowered = name.lower()
    return data.labels is not None or any(w in lowered for w in ("logit", "score", "prob"))


def _open(path: str | os.PathLike[str], threads: int, data: EvalSet) -> Session:
    if not is_tflite(path):
        return make_session(path, threads=threads)
    session = LiteRTSession(path, threads=threads)
    session.fit_layout(data.inputs)
    return session


def _measure(
    name: str,
    path: str | os.PathLike[str],
    session: Session,
    feed: dict[str, np.ndarray],
    data: EvalSet,
    threads: int,
) -> BenchResult:
    """Size, accuracy (with labels) and the kernels that ran; latency is timed later."""
    acc = accuracy(session, feed, data.labels) if data.labels is not None else None
    kernels = tflite_kernels(path) if is_tflite(path) else count_kernels(path, threads=threads)
    return BenchResult(
        name=name,
        path=os.fspath(path),
        size_bytes=Path(path).stat().st_size,
        accuracy=acc,
        latency={},
        kernels=kernels,
        threads=threads,
    )


def _fidelity(
    path: str | os.PathLike[str],
    session: Session,
    feed: dict[str, np.ndarray],
    ref_outputs: dict[str, np.ndarray],
    data: EvalSet,
    probabilities: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """Each output's fidelity against the reference's output of the same name; outputs named in
    ``probabilities`` are not softmaxed again (others are judged by their values)."""
    outputs = predict_all(session, feed)
    missing = [k for k in ref_outputs if k not in outputs]
    if missing:
        raise DataError(
            f"{os.fspath(path)!r} has outputs {sorted(outputs)}; the reference has "
            f"{sorted(ref_outputs)} (missing {missing})"
        )
    # NOTE: top-1 agreement means something for class scores, not for an embedding's largest
    # dimension: it is reported when the data has labels or the output is named as
    # logits/scores/probabilities.
    return {
        k: fidelity(
            outputs[k], v, classifier=_is_classifier(k, v, data),
            probabilities=True if k in probabilities else None,
        ).as_dict()
        for k, v in ref_outputs.items()
    }  # fmt: skip


def _probability_outputs(reference: str | os.PathLike[str]) -> frozenset[str]:
    """The reference's outputs written by Softmax or Sigmoid: already probabilities."""
    if is_tflite(reference):
        return frozenset()
    graph = onnx.load(os.fspath(reference), load_external_data=False).graph
    names = {o.name for o in graph.output}
    return frozenset(
        o for n in graph.node if n.op_type in ("Softmax", "Sigmoid") for o in n.output if o in names
    )


def bench_models(
    paths: Sequence[str | os.PathLike[str]],
    data: EvalSet,
    *,
    batches: Sequence[int] = (1, 256),
    threads: int = 1,
    names: Sequence[str] | None = None,
    budget_s: float = 2.0,
    on_step: Callable[[str], None] | None = None,
    reference: str | os.PathLike[str] | None = None,
) -> list[BenchResult]:
    """Measure every model on the same data; latency is timed interleaved across models.

    With ``reference`` (the float model), each result's ``extra["fidelity"]`` maps every output
    name to its fidelity against the reference's output (``quanta.runtime.fidelity``).
    """
    names = list(names) if names is not None else [Path(p).stem for p in paths]
    sessions = [_open(p, threads, data) for p in paths]
    feeds = [feeds_for(s, data) for s in sessions]
    ref_outputs: dict[str, np.ndarray] | None = None
    probabilities: frozenset[str] = frozenset()
    if reference is not None:
        probabilities = _probability_outputs(reference)
        if on_step:
            on_step("reference outputs")
        ref_session = make_session(reference, threads=threads)
        ref_outputs = predict_all(ref_session, feeds_for(ref_session, data))
    results = []
    for name, path, session, feed in zip(names, paths, sessions, feeds, strict=True):
        if on_step:
            on_step(f"accuracy and kernels of {name}")
        results.append(_measure(name, path, session, feed, data, threads))
        if ref_outputs is not None:
            results[-1].extra["fidelity"] = _fidelity(
                path, session, feed, ref_outputs, data, probabilities
            )
    _time(results, sessions, feeds, batches, budget_s, on_step)
    return results


def _time(
    results: list[BenchResult],
    sessions: list[Session],
    feeds: list[dict[str, np.ndarray]],
    batches: Sequence[int],
    budget_s: float,
    on_step: Callable[[str], None] | None,
) -> None:
    """Latency at each batch size each model accepts, interleaved across the models that run it.

    NOTE: a model whose batch is fixed (to 1, say) cannot run a call of 256 samples; timing 256
    calls of one would report a figure no call of that model ever takes, so it is timed at its
    fixed batch instead, once, and ``extra["fixed_batch"]`` says so (the CLI prints which
    requested batch sizes were not timed).
    """
    fixed = [fixed_batch(s) for s in sessions]
    for result, f in zip(results, fixed, strict=True):
        if f is not None:
            result.extra["fixed_batch"] = f
    timed = sorted({b if f is None else f for b in batches for f in fixed})
    for batch in timed:
        group = [k for k, f in enumerate(fixed) if f == batch or (f is None and batch in batches)]
        if on_step:
            on_step(f"latency at batch {batch}")
        lats = interleaved_latency(
            [sessions[k] for k in group], [feeds[k] for k in group], batch, budget_s=budget_s
        )
        for k, lat in zip(group, lats, strict=True):
            results[k].latency[batch] = lat
