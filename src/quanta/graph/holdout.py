"""Held-out calibration samples: fidelity is judged on samples the calibration never saw.

``hold_out`` draws ``min(wanted, count // 4)`` samples by a fixed-seed permutation (the same
split on every run and machine); the rest calibrate. Below 4 samples nothing can be spared, and
fidelity is then scored on the calibration samples themselves, which the notes say.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from quanta.graph.calibrate import CalibrationData
from quanta.runtime.batching import fixed_batch

__all__ = ["HOLDOUT_SEED", "HeldOut", "hold_out"]

HOLDOUT_SEED = 0


@dataclass(frozen=True)
class HeldOut:
    """A split of calibration data: ``calibration`` observes ranges, ``feeds`` judge fidelity.

    ``held_out`` is how many samples ``feeds`` holds that calibration did not use (0 when the
    set was too small to spare any: ``feeds`` are then calibration samples).
    """

    calibration: CalibrationData
    feeds: dict[str, np.ndarray]
    held_out: int

    @property
    def calibrated(self) -> int:
        return self.calibration.count

    def where(self) -> str:
        """How notes name ``feeds``: "32 held-out calibration samples"."""
        if self.held_out:
            return f"{self.held_out} held-out calibration sample{'s' * (self.held_out != 1)}"
        return f"{_count(self.feeds)} calibration samples (none held out)"

    def describe(self) -> str:
        """E.g. "calibrated on 168 samples, fidelity on 32 held out"."""
        if self.held_out:
            return f"calibrated on {self.calibrated} samples, fidelity on {self.held_out} held out"
        return (
            f"calibrated on {self.calibrated} samples, fidelity on the same "
            f"{_count(self.feeds)} (too few to hold any out; give at least 4)"
        )


def hold_out(
    data: CalibrationData,
    wanted: int,
    seed: int = HOLDOUT_SEED,
) -> HeldOut:
    """Split ``data``: ``min(wanted, data.count // 4)`` samples chosen by a permutation seeded
    with ``seed`` are held out for fidelity; the rest calibrate (lazily read arrays stay lazy).
    A model whose batch is fixed runs the held-out feed in calls of its batch
    (``quanta.runtime.run_model``) and calibrates on the rest in calls of that size."""
    k = min(wanted, data.count // 4)
    if k == 0:
        everything = np.arange(min(wanted, data.count))
        return HeldOut(data, _take(data, everything), 0)
    chosen = np.sort(np.random.default_rng(seed).permutation(data.count)[:k])
    return HeldOut(_Without(data, chosen), _take(data, chosen), k)


def _count(feeds: dict[str, np.ndarray]) -> int:
    return len(next(iter(feeds.values())))


def _take(data: CalibrationData, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Samples ``rows`` of every array as one feed (float64 read as float32, as calibration)."""
    feeds = {}
    for name, array in data.arrays.items():
        # NOTE: slices, not fancy indexing: a lazily read npz member reads slices only
        value = np.concatenate([np.asarray(array[int(i) : int(i) + 1]) for i in rows])
        feeds[name] = value.astype(np.float32) if value.dtype == np.float64 else value
    return feeds


class _Without(CalibrationData):
    """``data`` less the samples ``rows`` (sorted): its batches with those rows dropped.

    Wraps rather than copies, so a 10,000-sample set read from disk a batch at a time stays so;
    anything else is ``data``'s own.
    """

    def __init__(self, data: CalibrationData, rows: np.ndarray) -> None:
        # NOTE: CalibrationData.__init__ is not called: ``data`` has validated the arrays
        self._data = data
        self._rows = rows
        self.arrays = data.arrays
        self.batch_size = data.batch_size
        self.count = data.count - len(rows)

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("_data")
        if data is None:  # while unpickling, before __dict__ is restored
            raise AttributeError(name)
        return getattr(data, name)

    def batches(
        self, model: onnx.ModelProto, batch_size: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        fixed = fixed_batch(model)
        if fixed is not None:
            yield from self._fixed_batches(fixed)
            return
        start = 0
        for batch in self._data.batches(model, batch_size):
            n = _count(batch)
            inside = self._rows[(self._rows >= start) & (self._rows < start + n)] - start
            start += n
            if len(inside):
                batch = {k: np.delete(np.asarray(v), inside, axis=0) for k, v in batch.items()}
            if _count(batch):
                yield batch

    def _fixed_batches(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        """The kept samples in calls of exactly ``size`` (a model whose batch is fixed), the
        last filled up with the first kept samples, as ``CalibrationData.batches`` does."""
        kept = np.setdiff1d(np.arange(self._data.count), self._rows)
        for start in range(0, len(kept), size):
            rows = kept[start : start + size]
            if len(rows) < size:
                rows = np.concatenate([rows, np.resize(kept, size - len(rows))])
            yield {
                name: np.concatenate([np.asarray(a[int(i) : int(i) + 1]) for i in rows])
                for name, a in self.arrays.items()
            }

    def split(self, parts: int) -> list[CalibrationData]:
        shards: list[CalibrationData] = []
        start = 0
        for shard in self._data.split(parts):
            end = start + shard.count
            inside = self._rows[(self._rows >= start) & (self._rows < end)] - start
            shards.append(_Without(shard, inside) if len(inside) else shard)
            start = end
        return [s for s in shards if s.count]
