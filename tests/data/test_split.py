"""Split/Dataset validation and calibration_split: balanced, seeded, never the first n rows."""

from __future__ import annotations

import numpy as np
import pytest

from quanta.data import Split, calibration_split
from quanta.errors import DataError


def make_split(counts: list[int]) -> Split:
    """Labels sorted by class, like the bundled CSV; each image's pixels encode its row index."""
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    n = labels.shape[0]
    images = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 1, 2, 2))
    return Split(images=images.copy(), labels=labels)


def rows_of(split: Split) -> np.ndarray:
    return split.images[:, 0, 0, 0].astype(np.int64)


def test_balanced_when_divisible() -> None:
    calib = calibration_split(make_split([50] * 10), 100)
    assert np.bincount(calib.labels, minlength=10).tolist() == [10] * 10


def test_balanced_within_one_when_not_divisible() -> None:
    calib = calibration_split(make_split([50] * 10), 47, seed=3)
    counts = np.bincount(calib.labels, minlength=10)
    assert counts.sum() == 47
    assert counts.max() - counts.min() <= 1


def test_small_class_gives_all_and_others_share_the_rest() -> None:
    # class 1 has only 3 samples: it gives all 3, the 27 left split 14/13 between classes 0 and 2
    calib = calibration_split(make_split([100, 3, 100]), 30, seed=0)
    counts = np.bincount(calib.labels, minlength=3).tolist()
    assert counts[1] == 3
    assert sorted([counts[0], counts[2]]) == [13, 14]


def test_images_stay_with_their_labels_and_are_distinct() -> None:
    split = make_split([20, 30, 25])
    calib = calibration_split(split, 40, seed=5)
    rows = rows_of(calib)
    assert len(set(rows.tolist())) == 40  # drawn without replacement
    np.testing.assert_array_equal(split.labels[rows], calib.labels)


def test_deterministic_for_seed_and_varies_across_seeds() -> None:
    split = make_split([30] * 10)
    a = calibration_split(split, 50, seed=7)
    b = calibration_split(split, 50, seed=7)
    c = calibration_split(split, 50, seed=8)
    np.testing.assert_array_equal(rows_of(a), rows_of(b))
    assert not np.array_equal(rows_of(a), rows_of(c))


def test_not_the_first_n_and_not_sorted() -> None:
    calib = calibration_split(make_split([30] * 10), 20, seed=0)
    assert set(calib.labels.tolist()) == set(range(10))
    assert not np.all(np.diff(calib.labels) >= 0)


def test_full_size_is_a_permutation() -> None:
    split = make_split([4, 5, 6])
    calib = calibration_split(split, 15)
    assert sorted(rows_of(calib).tolist()) == list(range(15))


def test_returns_copies() -> None:
    split = make_split([5, 5])
    calib = calibration_split(split, 4)
    calib.images[...] = -1
    assert split.images.min() == 0


@pytest.mark.parametrize("n", [0, -1, 11])
def test_n_out_of_range(n: int) -> None:
    with pytest.raises(DataError, match=rf"n={n} is out of range; expected 1 <= n <= 10"):
        calibration_split(make_split([5, 5]), n)


@pytest.mark.parametrize("n", [2.0, "4", True])
def test_n_not_an_int(n: object) -> None:
    with pytest.raises(DataError, match=r"is not an integer"):
        calibration_split(make_split([5, 5]), n)  # type: ignore[arg-type]


def test_split_validates_dtypes_and_lengths() -> None:
    good_x = np.zeros((3, 1, 28, 28), np.float32)
    good_y = np.zeros(3, np.int64)
    assert len(Split(good_x, good_y)) == 3
    with pytest.raises(DataError, match=r"Split.images is a float64 array .*expected a float32"):
        Split(good_x.astype(np.float64), good_y)
    with pytest.raises(DataError, match=r"Split.images is a float32 array of shape \(3, 28, 28\)"):
        Split(good_x[:, 0], good_y)
    with pytest.raises(DataError, match=r"Split.labels is a uint8 array"):
        Split(good_x, good_y.astype(np.uint8))
    with pytest.raises(DataError, match=r"3 images but 2 labels"):
        Split(good_x, good_y[:2])
