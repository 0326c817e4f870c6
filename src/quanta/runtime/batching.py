"""Running a model over N samples in calls it accepts: the one place that knows fixed dimensions.

Samples sit on axis 0 of every input array, rank kept: sample ``i`` of an input is
``array[i:i+1]``. A model whose input declares its first dimension as a number (``1``, ``2``)
has a *fixed batch*: ONNX Runtime refuses any other size, so the samples go through in calls of
exactly that many (the last call filled up with samples from the start of the set: their
outputs are dropped by ``run_batched``; calibration and ``verify``, which read intermediate
tensors, see those samples twice). A first dimension that is a name, unknown or ``-1`` is
dynamic: calls of the requested chunk size. Inputs that disagree (one fixed to 1, another to
2) are refused.

The batch axis of an output (where its samples lie, to concatenate the calls' outputs along):
the axis whose size, in the output of one call, equals that call's number of samples; where
several do, the one whose declared dimension is named like the inputs' batch dimension, else the
first. Declared shapes alone are not trusted: exporters write wrong ones (ddddocr declares
``(1, seqlen)`` and returns ``(T, 1, C)``: batch axis 1). An output of a one-sample call with no
axis of size 1 (the batch squeezed away) gets a new axis 0. Every output is returned with its
samples moved to axis 0, so quanta's metrics (cosine per sample, top-1) read them alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np
import onnx

from quanta.errors import ModelError

__all__ = ["SessionLike", "batch_axis", "chunk_size", "chunks", "fixed_batch", "run_batched"]


class _Arg(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> Sequence[int | str | None] | None: ...


class SessionLike(Protocol):
    """ONNX Runtime's session API, as far as batching reads it (LiteRTSession answers it too)."""

    def get_inputs(self) -> Sequence[_Arg]: ...
    def get_outputs(self) -> Sequence[_Arg]: ...
    def run(
        self, names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]: ...


def _first_dims(source: onnx.ModelProto | SessionLike) -> dict[str, int | str | None]:
    """Each graph input's first dimension: a positive int (fixed), a name, or None."""
    if isinstance(source, onnx.ModelProto):
        inits = {t.name for t in source.graph.initializer}
        out: dict[str, int | str | None] = {}
        for value in source.graph.input:
            if value.name in inits:
                continue
            t = value.type.tensor_type
            dims = t.shape.dim if t.HasField("shape") else []
            if not dims:
                out[value.name] = None
            elif dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                out[value.name] = int(dims[0].dim_value)
            else:
                out[value.name] = dims[0].dim_param or None
        return out
    firsts: dict[str, int | str | None] = {}
    for arg in source.get_inputs():
        d = arg.shape[0] if arg.shape else None
        firsts[arg.name] = d if isinstance(d, str) or (isinstance(d, int) and d > 0) else None
    return firsts


def fixed_batch(source: onnx.ModelProto | SessionLike) -> int | None:
    """The batch size the model's inputs fix (their first dimension), or None when dynamic."""
    firsts = _first_dims(source)
    fixed = {name: d for name, d in firsts.items() if isinstance(d, int)}
    if len(set(fixed.values())) > 1:
        listed = ", ".join(f"{n!r} {d}" for n, d in fixed.items())
        raise ModelError(
            f"the model's inputs fix different batch sizes ({listed}); expected one batch size "
            "for all inputs"
        )
    return next(iter(fixed.values()), None)


def chunk_size(source: onnx.ModelProto | SessionLike, requested: int) -> int:
    """Samples per call: the fixed batch when the model has one, else ``requested``."""
    return fixed_batch(source) or max(1, requested)


def chunks(
    feeds: Mapping[str, np.ndarray], size: int, *, fill: bool = True
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Calls of ``size`` samples and how many of each are real. With ``fill`` (a fixed batch) a
    short last call is filled with samples from the start of the set (tiled if the set is
    smaller than ``size``); without, it is just shorter."""
    n = len(next(iter(feeds.values())))
    for start in range(0, n, size):
        real = min(size, n - start)
        call = {}
        for k, v in feeds.items():
            part = np.asarray(v[start : start + size])
            if fill and real < size:
                reps = -(-size // n)
                filler = np.concatenate([np.asarray(v)] * reps)[: size - real]
                part = np.concatenate([part, filler])
            call[k] = part
        yield call, real


def _batch_symbols(session: SessionLike) -> set[str]:
    return {a.shape[0] for a in session.get_inputs() if a.shape and isinstance(a.shape[0], str)}


def batch_axis(
    shape: Sequence[int], batch: int, declared: Sequence[int | str | None] | None = None,
    symbols: set[str] | frozenset[str] = frozenset(),
) -> int | None:  # fmt: skip
    """The axis of an output of ``shape`` that holds a call's ``batch`` samples (module
    docstring: the rule), or None when no axis has that size."""
    candidates = [k for k, s in enumerate(shape) if s == batch]
    if not candidates:
        return None
    if declared is not None and len(declared) == len(shape):
        named = [k for k in candidates if isinstance(declared[k], str) and declared[k] in symbols]
        if named:
            return named[0]
    return candidates[0]


def run_batched(
    session: SessionLike,
    feeds: Mapping[str, np.ndarray],
    *,
    batch_size: int = 256,
    names: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """The outputs ``names`` (default all) of ``session`` over every sample of ``feeds``, in
    calls the model accepts (``chunk_size``), each with its samples on axis 0."""
    outputs = list(session.get_outputs())
    wanted = list(names) if names is not None else [o.name for o in outputs]
    declared = {o.name: o.shape for o in outputs}
    symbols = _batch_symbols(session)
    fixed = fixed_batch(session)
    size = fixed or max(1, batch_size)
    n = len(next(iter(feeds.values())))
    parts: list[list[np.ndarray]] = [[] for _ in wanted]
    for call, real in chunks(feeds, size, fill=fixed is not None):
        values = session.run(wanted, call)
        b = len(next(iter(call.values())))  # samples in this call, filler included
        for name, value, acc in zip(wanted, values, parts, strict=True):
            value = np.asarray(value)
            axis = batch_axis(value.shape, b, declared.get(name), symbols)
            if axis is None and n <= size and fixed is None:
                acc.append(value)  # one call of a dynamic batch: nothing to join, kept as is
                continue
            if axis is None:
                if b != 1:
                    raise ModelError(
                        f"output {name!r} has shape {value.shape}, no axis of size {b} (the "
                        f"samples in one call); expected the batch on one of its axes"
                    )
                value = value[np.newaxis]  # one sample, batch squeezed away: (1, ...)
                axis = 0
            value = np.moveaxis(value, axis, 0)[:real]
            acc.append(value)
    return [np.concatenate(p) for p in parts]
