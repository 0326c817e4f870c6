"""Calibration: run the float model in ONNX Runtime (a session from ``quanta.runtime``) and let
observers stream each tensor's range."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import TypeVar

import numpy as np
import onnx

from quanta.data.arrays import NpyMember
from quanta.data.layout import layout_mismatch
from quanta.errors import DataError, QuantaError
from quanta.graph.sampled_statistics import InGraphStatistics
from quanta.quant import MeanObserver, MinMaxObserver, Observer
from quanta.runtime.batching import fixed_batch
from quanta.runtime.session import session_with_outputs
from quanta.runtime.statistics import StatisticsSession, StatisticsUnavailable

__all__ = ["CalibrationData", "collect_ranges", "collect_statistics"]


class CalibrationData:
    """Samples for calibration: one array per model input, samples along axis 0.

    Sample ``i`` is ``array[i:i+1]`` (rank kept). When every input's first dimension is dynamic,
    consecutive samples are fed together in batches of ``batch_size``; where an input fixes it,
    in batches of exactly that size. Models without batch norm in training mode give the same
    per-sample values either way, so observers see the same data.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        samples: int | None = None,
        batch_size: int = 100,
    ) -> None:
        if not arrays:
            raise DataError("calibration data holds no arrays; expected one array per model input")
        counts = {name: len(a) for name, a in arrays.items()}
        n = min(counts.values())
        if len(set(counts.values())) != 1:
            raise DataError(
                f"calibration arrays have different sample counts {counts}; expected one N"
            )
        if n == 0:
            raise DataError("calibration data has 0 samples; expected at least 1")
        if samples is not None:
            if samples < 1:
                raise DataError(f"--samples must be >= 1, got {samples}")
            n = min(n, samples)
        # arrays read from disk a batch at a time (quanta.data.NpyMember) stay that way
        self.arrays = {
            name: a if isinstance(a, NpyMember) else np.asarray(a) for name, a in arrays.items()
        }
        self.count = n
        self.batch_size = max(1, batch_size)

    def check_inputs(self, model: onnx.ModelProto) -> None:
        """Names, ranks and fixed dimensions must match the model's inputs."""
        initializers = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        names = [i.name for i in inputs]
        missing = [n for n in names if n not in self.arrays]
        extra = [n for n in self.arrays if n not in names]
        if missing or extra:
            raise DataError(
                f"calibration data has arrays {sorted(self.arrays)}; the model's inputs are "
                f"{names}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unexpected {extra})" if extra else "")
            )
        for value in inputs:
            tensor_type = value.type.tensor_type
            array = self.arrays[value.name]
            want = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
            if want.kind == "f" and array.dtype.kind != "f":
                raise DataError(
                    f"calibration array {value.name!r} holds {array.dtype}; the model's input "
                    f"{value.name!r} takes {want} (floating point values)"
                )
            if want.kind in "iu" and array.dtype.kind not in "iu":
                raise DataError(
                    f"calibration array {value.name!r} holds {array.dtype}; the model's input "
                    f"{value.name!r} takes {want} (integers, e.g. token ids)"
                )
            if not tensor_type.HasField("shape"):
                continue  # the model declares no shape: the data decides
            dims = tensor_type.shape.dim
            expected = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims
            )
            if array.ndim != len(expected) or any(
                e is not None and i > 0 and e != s
                for i, (e, s) in enumerate(zip(expected, array.shape, strict=True))
            ):
                shape = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
                raise DataError(
                    layout_mismatch("calibration", value.name, array.shape, expected)
                    or f"calibration array {value.name!r} has shape {array.shape}; the model's "
                    f"input {value.name!r} expects {shape}"
                )

    def batches(
        self, model: onnx.ModelProto, batch_size: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Consecutive samples, ``batch_size`` at a time; exactly the model's batch where its
        inputs fix one (``quanta.runtime.batching``), the last call filled up with the first
        samples (min-max ranges are unchanged by a repeated sample; a histogram counts it
        twice)."""
        fixed = fixed_batch(model)
        step = fixed or max(1, batch_size or self.batch_size)
        for start in range(0, self.count, step):
            stop = min(start + step, self.count)
            feed = {name: np.asarray(a[start:stop]) for name, a in self.arrays.items()}
            if fixed is not None and stop - start < fixed:
                feed = {name: self._fill(v, self.arrays[name], fixed) for name, v in feed.items()}
            yield feed

    def _fill(self, part: np.ndarray, array: np.ndarray, size: int) -> np.ndarray:
        """``part`` followed by the set's first samples (again and again) up to ``size``."""
        pieces = [part]
        have = len(part)
        while have < size:
            take = min(size - have, self.count)
            pieces.append(np.asarray(array[0:take]))
            have += take
        return np.concatenate(pieces)

    def head(self, model: onnx.ModelProto, count: int) -> dict[str, np.ndarray]:
        """The first ``count`` samples as one feed (``run_model`` runs them in calls the model
        accepts, whatever its batch)."""
        n = max(1, min(count, self.count))
        return {
            k: (v.astype(np.float32, copy=False) if v.dtype == np.float64 else v)
            for k, v in ((k, np.asarray(a[:n])) for k, a in self.arrays.items())
        }

    def split(self, parts: int) -> list[CalibrationData]:
        """Up to ``parts`` contiguous shards of the samples (lazy arrays stay lazy)."""
        bounds = np.linspace(0, self.count, min(parts, self.count) + 1).astype(int)
        shards = []
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            arrays = {
                k: a.rows(start, stop) if isinstance(a, NpyMember) else a[start:stop]
                for k, a in self.arrays.items()
            }
            shards.append(CalibrationData(arrays, batch_size=self.batch_size))
        return shards

    def num_batches(self, model: onnx.ModelProto, batch_size: int | None = None) -> int:
        return sum(1 for _ in self.batches(model, batch_size))


# NOTE: the observed tensors of one batch are all in memory at once (ONNX Runtime returns them
# together); a CNN at 224x224 holds ~25 MB of activations per image, so batches are sized to
# stay near this budget whatever the model.
BATCH_BYTES = 256 * 2**20


def _bytes_per_sample(model: onnx.ModelProto, tensors: Sequence[str]) -> int:
    """Bytes of the observed tensors for one sample, from the inferred shapes (unknown: 1)."""
    shapes = {
        v.name: v.type.tensor_type.shape.dim
        for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]
    }
    total = 0
    for name in tensors:
        dims = shapes.get(name)
        if dims is None:
            continue
        size = 4
        for d in list(dims)[1:]:
            size *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
        total += size
    return max(total, 1)


def collect_ranges(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    data: CalibrationData,
    *,
    make_observer: Callable[[], Observer] = MinMaxObserver,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Observer]:
    """Run ``model`` over ``data`` and return one range observer per name in ``tensors``."""
    ranges, _ = collect_statistics(
        model, tensors, data, make_observer=make_observer, on_batch=on_batch
    )
    return ranges


def collect_statistics(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    data: CalibrationData,
    *,
    channel_means: Mapping[str, int] | None = None,
    make_observer: Callable[[], Observer] = MinMaxObserver,
    on_batch: Callable[[int, int], None] | None = None,
    workers: int = 1,
    threads: int = 0,
) -> tuple[dict[str, Observer], dict[str, MeanObserver]]:
    """Range observers for ``tensors`` and per-channel means for ``channel_means`` (tensor ->
    channel axis), from one run of ``model`` over ``data``.

    Where every observer takes summaries (per-tensor min-max and histogram observers), the
    statistics are computed inside ONNX Runtime (``quanta.runtime.statistics``): per tensor and
    batch its exact min and max, a check sum, per-channel sums for the means and, for
    histograms, an evenly strided sample of at most ``SAMPLE_CAP`` values; only those small
    outputs come back to NumPy. A tensor whose samples would add up to twice
    ``SAMPLED_VALUES`` is sampled on every k-th batch only
    (``quanta.graph.sampled_statistics``); on its other batches, and on every batch where no
    observer needs a sample, a 4-D tensor is summarized by layout-aware pooling
    (``quanta.runtime.pooled_statistics``: exact maxima and minima; a tensor >= 0 by
    construction gets 0 as its minimum, which every range includes); a tensor sampled every
    k-th batch has its channel means taken on those batches only and, after the first, its
    sample inside the blocked layout (every s-th row and column). A batch holding NaN or Inf
    (on a pooled batch: a non-finite graph output or extreme, ``quanta.runtime.statistics``),
    and observers that need whole tensors, get every tensor as a graph output instead, so
    ONNX Runtime keeps it. One batch at a time flows through, so memory holds one batch of
    activations, never the data set.

    With ``workers > 1`` the samples are split into that many contiguous shards, each run by
    its own process (one ONNX Runtime thread each), and the observers merged: min-max exactly
    (the result equals one process's), histograms by re-binning onto a common grid
    (``HistogramObserver.merge``: every bin edge within one bin width of one process's), means
    by sums and counts.
    """
    channel_means = dict(channel_means or {})
    data.check_inputs(model)
    if workers > 1 and data.count > 1:
        return _collect_in_workers(model, tensors, data, channel_means, make_observer, on_batch,
                                   workers)  # fmt: skip
    names = list(dict.fromkeys([*tensors, *channel_means]))
    observers = {name: make_observer() for name in tensors}
    means = {name: MeanObserver(axis=axis) for name, axis in channel_means.items()}
    batch = max(1, min(data.batch_size, BATCH_BYTES // _bytes_per_sample(model, names)))
    total = data.num_batches(model, batch)
    whole = _WholeTensors(model, names, threads)
    in_graph = _in_graph_session(model, tensors, channel_means, observers, threads, total)
    for i, feeds in enumerate(data.batches(model, batch)):
        feeds = {
            k: v.astype(np.float32, copy=False) if v.dtype == np.float64 else v
            for k, v in feeds.items()
        }
        summary = _run(partial(in_graph.run, i=i), feeds, i) if in_graph is not None else None
        if summary is None:  # no in-graph statistics, or a NaN or Inf in this batch
            whole.update(feeds, i, observers, means)
        else:
            for name, s in summary[0].items():
                observers[name].update_summary(s.minimum, s.maximum, s.size, s.sample)
            for name, c in summary[1].items():
                means[name].update_sums(c.sums, c.count)
        if on_batch is not None:
            on_batch(i + 1, total)
    return observers, means


def _in_graph_session(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    channel_means: Mapping[str, int],
    observers: Mapping[str, Observer],
    threads: int,
    total: int,
) -> InGraphStatistics | None:
    """Statistics computed inside ONNX Runtime (``quanta.graph.sampled_statistics``) where
    every observer can take them; None where one needs whole tensors."""
    if not all(type(o).from_summary and o.axis is None for o in observers.values()):
        return None
    samples = any(type(o).needs_sample for o in observers.values())
    make = partial(StatisticsSession, model, tensors, channel_means, threads=threads)
    try:
        return InGraphStatistics(make, model, tensors, samples, total, means=channel_means)
    except StatisticsUnavailable:
        return None


class _WholeTensors:
    """Every observed tensor as a graph output, returned to NumPy: observers that need whole
    tensors, and batches holding NaN or Inf (the session is made on first use)."""

    def __init__(self, model: onnx.ModelProto, names: list[str], threads: int) -> None:
        self.model, self.names, self.threads = model, names, threads
        self.run: Callable[[dict[str, np.ndarray]], list[np.ndarray]] | None = None

    def update(
        self,
        feeds: dict[str, np.ndarray],
        i: int,
        observers: Mapping[str, Observer],
        means: Mapping[str, MeanObserver],
    ) -> None:
        if self.run is None:
            session = session_with_outputs(self.model, self.names, threads=self.threads)
            self.run = partial(session.run, self.names)
        outputs = _run(self.run, feeds, i)
        for name, value in zip(self.names, outputs, strict=True):
            if name in observers:
                observers[name].update(value)
            if name in means:
                means[name].update(value)


_T = TypeVar("_T")


def _run(fn: Callable[[dict[str, np.ndarray]], _T], feeds: dict[str, np.ndarray], i: int) -> _T:
    try:
        return fn(feeds)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"the model could not run on calibration batch {i}: {first}") from exc


def _collect_in_workers(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    data: CalibrationData,
    channel_means: Mapping[str, int],
    make_observer: Callable[[], Observer],
    on_batch: Callable[[int, int], None] | None,
    workers: int,
) -> tuple[dict[str, Observer], dict[str, MeanObserver]]:
    if not hasattr(make_observer(), "merge"):
        raise QuantaError(
            f"{type(make_observer()).__name__} cannot merge workers' statistics; use one worker"
        )
    shards = data.split(workers)
    blob = model.SerializeToString()
    # NOTE: spawn, not fork: ONNX Runtime's thread pools do not survive a fork
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(shards), mp_context=context) as pool:
        futures = [
            pool.submit(
                _collect_shard, blob, list(tensors), shard, dict(channel_means), make_observer
            )
            for shard in shards
        ]
        results = []
        for done, future in enumerate(futures, 1):
            results.append(future.result())
            if on_batch is not None:
                on_batch(done, len(futures))
    observers, means = results[0]
    for other_observers, other_means in results[1:]:
        for name, observer in observers.items():
            observer.merge(other_observers[name])  # type: ignore[attr-defined]
        for name, mean in means.items():
            mean.merge(other_means[name])
    return observers, means


def _collect_shard(
    blob: bytes,
    tensors: list[str],
    data: CalibrationData,
    channel_means: dict[str, int],
    make_observer: Callable[[], Observer],
) -> tuple[dict[str, Observer], dict[str, MeanObserver]]:
    """One worker: its shard through its own session, one thread."""
    model = onnx.load_model_from_string(blob)
    return collect_statistics(
        model, tensors, data, channel_means=channel_means, make_observer=make_observer, threads=1
    )
