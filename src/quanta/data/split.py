"""Labelled image sets, and the class-balanced subset used for calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quanta.errors import DataError

__all__ = ["Split", "Dataset", "calibration_split"]


# NOTE: eq=False because the generated __eq__/__hash__ would compare arrays element-wise and
# fail ("truth value of an array is ambiguous"); identity equality is what arrays allow.
@dataclass(frozen=True, eq=False)
class Split:
    """One labelled image set.

    Attributes:
        images: ``float32`` array of shape ``(N, C, H, W)``, for MNIST ``(N, 1, 28, 28)``, with
            pixels scaled to [0, 1] (``uint8 / 255``).
        labels: ``int64`` array of shape ``(N,)``.
    """

    images: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.float32 or images.ndim != 4:
            raise DataError(
                f"Split.images is {_describe(images)}; expected a float32 array of shape "
                "(N, C, H, W), e.g. (N, 1, 28, 28)"
            )
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
            raise DataError(
                f"Split.labels is {_describe(labels)}; expected an int64 array of shape (N,)"
            )
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"Split has {images.shape[0]} images but {labels.shape[0]} labels; "
                "expected one label per image"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a test split, and where they came from.

    Attributes:
        train: The training split.
        test: The test split.
        source: Human-readable origin, e.g. ``"MNIST IDX in /data/mnist"``.
    """

    train: Split
    test: Split
    source: str


def calibration_split(split: Split, n: int, *, seed: int = 0) -> Split:
    """Draw a class-balanced, seeded random subset of ``n`` samples.

    Each class present in ``split`` gets ``n // k`` samples (``k`` classes); the remaining
    ``n % k`` go to randomly chosen classes. A class with too few samples gives all it has and
    the shortfall is shared among the others. Within a class the samples are drawn without
    replacement, and the result is shuffled so that it is not ordered by label.

    Args:
        split: The split to draw from.
        n: Number of samples, ``1 <= n <= len(split)``.
        seed: Seed of ``numpy.random.default_rng``; the same seed gives the same subset.

    Returns:
        A new ``Split`` with ``n`` samples (copies, not views).

    Raises:
        DataError: ``n`` is not an int in ``1..len(split)``.

    Example:
        >>> from quanta.data import calibration_split, load_mnist
        >>> calib = calibration_split(load_mnist().train, 100, seed=0)
        >>> np.bincount(calib.labels).tolist()
        [10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise DataError(f"calibration size n={n!r} is not an integer; expected e.g. n=256")
    if not 1 <= n <= len(split):
        raise DataError(
            f"calibration size n={n} is out of range; expected 1 <= n <= {len(split)} "
            "(the number of samples in the split)"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(split.labels, return_counts=True)
    quota = _balanced_quota(counts, int(n), rng)
    picked = [
        rng.choice(np.flatnonzero(split.labels == c), size=q, replace=False)
        for c, q in zip(classes, quota, strict=True)
        if q > 0
    ]
    order = rng.permutation(np.concatenate(picked))
    return Split(images=split.images[order], labels=split.labels[order])  # fancy indexing copies


def _balanced_quota(
    counts: npt.NDArray[np.int64], n: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Per-class sample counts summing to ``n``, as equal as each class's size allows."""
    quota = np.zeros_like(counts)
    left = n
    # Water-filling: share what is left equally among classes that still have room; a class that
    # runs out keeps all it has, and its unused share goes round again.
    while left > 0:
        room = np.flatnonzero(quota < counts)
        share = left // len(room)
        if share == 0:
            # Fewer samples left than classes with room: one more each for a random few.
            lucky = rng.choice(room, size=left, replace=False)
            quota[lucky] += 1
            break
        add = np.minimum(share, counts[room] - quota[room])
        quota[room] += add
        left -= int(add.sum())
    return quota


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} array of shape {x.shape}"
    return f"a {type(x).__name__}"
