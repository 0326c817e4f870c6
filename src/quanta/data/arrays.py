"""Load model inputs saved as an ``.npz``: one array per model input, samples along axis 0."""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quanta.errors import DataError

__all__ = ["NpyMember", "load_npz"]

LABELS_KEY = "labels"


class NpyMember:
    """An array stored uncompressed in an ``.npz`` (``np.savez``), read from disk a slice of
    samples at a time: ``len``, ``shape``, ``dtype``, ``ndim`` and ``member[start:stop]`` (axis
    0) are all calibration needs, so a 10,000-sample set never sits in memory whole."""

    def __init__(
        self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype, key: str
    ) -> None:
        self.path, self.offset, self.shape, self.dtype, self.key = path, offset, shape, dtype, key
        self.ndim = len(shape)
        self._row = int(np.prod(shape[1:], dtype=np.int64)) if shape else 1

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def rows(self, start: int, stop: int) -> NpyMember:
        """Samples ``start:stop`` as another lazy member (nothing is read)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        offset = self.offset + start * self._row * self.dtype.itemsize
        return NpyMember(
            self.path, offset, (max(0, stop - start), *self.shape[1:]), self.dtype, self.key
        )

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("NpyMember supports slices along axis 0 only")
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise TypeError("NpyMember supports contiguous slices only")
        count = max(0, stop - start)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self._row * self.dtype.itemsize)
            data = np.fromfile(f, dtype=self.dtype, count=count * self._row)
        if data.size != count * self._row:
            raise DataError(f"npz file {str(self.path)!r} array {self.key!r} is truncated")
        return data.reshape((count, *self.shape[1:]))

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[0 : len(self)]
        return whole if dtype is None else whole.astype(dtype)

    def chunks(self, rows: int = 1024) -> Iterator[np.ndarray]:
        for start in range(0, len(self), rows):
            yield self[start : start + rows]


def load_npz(
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str] | None = None,
    stream: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Load inputs (and optional labels) from an ``.npz`` file, never unpickling.

    The file holds one array per model input, keyed by the input's name, with samples along
    axis 0, and optionally a ``"labels"`` array of shape ``(N,)``. Make one with
    ``np.savez(path, image=x, labels=y)``.

    Args:
        path: The ``.npz`` file.
        input_names: The model's input names. When given, every name must be present and no
            other key may be, besides ``"labels"``; the returned dict follows this order. (A
            model input literally named ``"labels"`` is then treated as an input.) When
            ``None``, every key but ``"labels"`` is an input, in file order.
        stream: return uncompressed input arrays as ``NpyMember`` (read a batch at a time)
            instead of loading them; compressed members (``np.savez_compressed``) are loaded.
        on_note: told, in one sentence, when a model with one input is fed the file's only
            array although its key is not the input's name.

    Returns:
        ``(inputs, labels)``: a dict from input name to array, and the ``(N,)`` int64 labels
        or ``None`` when the file has none.

    Raises:
        DataError: The file is missing or not a valid npz (or needs pickle), holds no input
            array, an input name is missing or a key is unexpected, arrays disagree on the
            number of samples N or have N = 0, an array is not numeric, a float array holds
            NaN or Inf, or labels are not a 1-D integer array.
    """
    name = str(path)
    arrays = _read_all(Path(path), stream=stream)
    has_labels = LABELS_KEY in arrays and (input_names is None or LABELS_KEY not in input_names)
    labels = arrays.pop(LABELS_KEY) if has_labels else None
    inputs = _select_inputs(arrays, input_names, name, on_note)
    for key, arr in inputs.items():
        _check_input(arr, key, name)
    sizes = {key: arr.shape[0] for key, arr in inputs.items()}
    if labels is not None:
        labels = _check_labels(labels, name)
        sizes[LABELS_KEY] = labels.shape[0]
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{k!r}: {n}" for k, n in sizes.items())
        raise DataError(
            f"npz file {name!r} arrays disagree on the number of samples along axis 0 ({listed}); "
            "expected the same N for every array"
        )
    if next(iter(sizes.values())) == 0:
        raise DataError(f"npz file {name!r} arrays hold 0 samples; expected at least 1")
    return inputs, labels


def _stored_members(path: Path) -> dict[str, NpyMember]:
    """The uncompressed, C-ordered .npy members of an npz, located in the file without reading
    their data (zip local header, then the .npy header)."""
    found: dict[str, NpyMember] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                continue
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                continue
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                continue
            if fortran or dtype.hasobject or not shape:
                continue
            key = info.filename[: -len(".npy")]
            member = NpyMember(path, f.tell(), tuple(shape), dtype, key)
            if (
                member.offset + member.size * dtype.itemsize
                > info.header_offset + 30 + name_len + extra_len + info.file_size
            ):
                continue
            found[key] = member
    return found


def _read_all(path: Path, *, stream: bool = False) -> dict[str, Any]:
    name = str(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise DataError(f"npz file {name!r} {what}; expected a path to an .npz file")
    try:
        # NOTE: allow_pickle=False: an npz from elsewhere must never run code when loaded.
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"npz file {name!r} is a single .npy array; expected an .npz archive made "
                "with np.savez(path, <input name>=array, ...)"
            )
        with loaded:
            streamed = _stored_members(path) if stream else {}
            arrays = {
                key: streamed[key] if key in streamed and key != LABELS_KEY else loaded[key]
                for key in loaded.files
            }
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(
            f"npz file {name!r} is not a valid pickle-free .npz archive ({exc}); expected a file "
            "made with np.savez(path, <input name>=array, ...)"
        ) from exc
    # NOTE: a zip member that is not a .npy file comes back as raw bytes, not an array.
    odd = [key for key, value in arrays.items() if not isinstance(value, np.ndarray | NpyMember)]
    if odd:
        raise DataError(
            f"npz file {name!r} member(s) {odd} are not .npy arrays; expected a file made with "
            "np.savez(path, <input name>=array, ...)"
        )
    return arrays


def _select_inputs(
    arrays: dict[str, np.ndarray],
    input_names: Sequence[str] | None,
    name: str,
    on_note: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    if input_names is None:
        if not arrays:
            raise DataError(
                f"npz file {name!r} holds no input array (keys: {sorted(arrays) or 'none'}); "
                "expected at least one array keyed by a model input name"
            )
        return arrays
    if isinstance(input_names, str):
        input_names = [input_names]
    if not input_names:
        raise DataError("input_names is empty; expected at least one model input name")
    present = sorted(arrays)
    if len(input_names) == 1 and len(arrays) == 1 and input_names[0] not in arrays:
        # one input, one array: which array feeds which input is not in doubt
        (key,) = arrays
        if on_note is not None:
            on_note(
                f"{name!r} holds one array, {key!r}: fed to the model's only input "
                f"{input_names[0]!r}"
            )
        return {input_names[0]: arrays[key]}
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise DataError(
            f"npz file {name!r} lacks the model input(s) {missing}; it holds {present}"
            f" (expected keys: {list(input_names)}, plus optional {LABELS_KEY!r})"
        )
    extra = [k for k in present if k not in input_names]
    if extra:
        raise DataError(
            f"npz file {name!r} holds unexpected key(s) {extra}; expected only the model inputs "
            f"{list(input_names)} plus optional {LABELS_KEY!r}"
        )
    return {n: arrays[n] for n in input_names}


def _check_input(arr: np.ndarray, key: str, name: str) -> None:
    if arr.ndim == 0:
        raise DataError(
            f"npz file {name!r} array {key!r} is a scalar; expected samples along axis 0, "
            "shape (N, ...)"
        )
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"npz file {name!r} array {key!r} has dtype {arr.dtype}; expected a numeric "
            "(bool, integer or float) dtype"
        )
    if arr.dtype.kind == "f":
        parts = arr.chunks() if isinstance(arr, NpyMember) else [arr]
        bad = sum(int(np.count_nonzero(~np.isfinite(part))) for part in parts)
        if bad:
            raise DataError(
                f"npz file {name!r} array {key!r} holds {bad} NaN or Inf value(s) out of "
                f"{arr.size}; expected finite values"
            )


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"npz file {name!r} array {LABELS_KEY!r} is a {labels.dtype} array of shape "
            f"{labels.shape}; expected integer labels of shape (N,)"
        )
    return labels.astype(np.int64)
