"""read_idx: round trips, gzip detection by magic, and one DataError per malformed-file case."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quanta.data import read_idx
from quanta.errors import DataError


def idx_bytes(arr: np.ndarray, *, type_byte: int = 0x08) -> bytes:
    """Hand-built IDX: two zero bytes, type byte, ndim, big-endian uint32 dims, then the data."""
    header = struct.pack(">BBBB", 0, 0, type_byte, arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "shape",
    [(7,), (3, 4, 5), (2, 28, 28), (2, 1, 3, 3)],
    ids=["labels-1d", "images-3d", "mnist-like", "4d"],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_round_trip(tmp_path: Path, shape: tuple[int, ...], gz: bool) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    data = idx_bytes(arr)
    path = write(tmp_path / "x.idx", gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # writable, not a view of immutable bytes


def test_header_matches_mnist_magic(tmp_path: Path) -> None:
    # 0x00000803 = ubyte, 3 dims; 0x00000801 = ubyte, 1 dim
    images = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    labels = idx_bytes(np.zeros(2, np.uint8))
    assert images[:4] == bytes.fromhex("00000803")
    assert labels[:4] == bytes.fromhex("00000801")
    assert images[4:16] == struct.pack(">III", 2, 28, 28)


def test_gzip_detected_by_magic_not_by_name(tmp_path: Path) -> None:
    arr = np.arange(10, dtype=np.uint8)
    # gzip content under a plain name, and plain content under a .gz name
    a = write(tmp_path / "labels-idx1-ubyte", gzip.compress(idx_bytes(arr)))
    b = write(tmp_path / "labels-idx1-ubyte.gz", idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(a), arr)
    np.testing.assert_array_equal(read_idx(b), arr)


def test_accepts_str_path(tmp_path: Path) -> None:
    path = write(tmp_path / "x", idx_bytes(np.ones(3, np.uint8)))
    assert read_idx(str(path)).tolist() == [1, 1, 1]


def test_zero_length_dimension_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path / "x", idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    assert read_idx(path).shape == (0, 28, 28)


def test_wrong_magic(tmp_path: Path) -> None:
    data = b"\x12\x34" + idx_bytes(np.zeros(4, np.uint8))[2:]
    with pytest.raises(DataError, match=r"magic number 0x12340801.*expected 0x000008NN"):
        read_idx(write(tmp_path / "x", data))


def test_wrong_type_byte(tmp_path: Path) -> None:
    # 0x0D is float32 in IDX; only unsigned bytes are supported
    data = idx_bytes(np.zeros(4, np.uint8), type_byte=0x0D)
    with pytest.raises(DataError, match=r"type byte 0x0D \(float32\).*0x08 \(unsigned byte\)"):
        read_idx(write(tmp_path / "x", data))


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_bad_ndim(tmp_path: Path, ndim: int) -> None:
    data = bytes([0, 0, 8, ndim]) + b"\x00" * 64
    with pytest.raises(DataError, match=rf"declares {ndim} dimensions.*expected 1 to 4"):
        read_idx(write(tmp_path / "x", data))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_data(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.zeros((3, 4, 5), np.uint8))[:-7]
    path = write(tmp_path / "x", gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"truncated: header declares 3x4x5 = 60 .*holds 53"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((3, 4), np.uint8)) + b"\x00\x01"
    with pytest.raises(DataError, match=r"2 trailing bytes: header declares 3x4 = 12 .*holds 14"):
        read_idx(write(tmp_path / "x", data))


def test_truncated_header(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((3, 4, 5), np.uint8))[:10]
    with pytest.raises(DataError, match=r"truncated inside its header: 10 bytes, expected 16"):
        read_idx(write(tmp_path / "x", data))


def test_shorter_than_magic(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"has 3 bytes; expected at least the 4-byte magic"):
        read_idx(write(tmp_path / "x", b"\x00\x00\x08"))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        read_idx(write(tmp_path / "x", b""))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'.*nope-idx1-ubyte' does not exist"):
        read_idx(tmp_path / "nope-idx1-ubyte")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is not a regular file"):
        read_idx(tmp_path)


@pytest.mark.parametrize("how", ["truncated", "flipped", "header-only"])
def test_corrupt_gzip(tmp_path: Path, how: str) -> None:
    gz = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    if how == "truncated":
        gz = gz[: len(gz) // 2]
    elif how == "flipped":
        gz[len(gz) // 2] ^= 0xFF  # the CRC-32 or the deflate stream catches it
    else:
        gz = gz[:2]  # just the gzip magic
    with pytest.raises(DataError, match=r"starts like gzip \(1f 8b\) but is not a valid gzip"):
        read_idx(write(tmp_path / "x.gz", bytes(gz)))


_VALID = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    gz=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
    tail=st.binary(max_size=8),
)
def test_corruption_raises_only_data_error(
    tmp_path: Path, gz: bool, flips: list[tuple[int, int]], cut: int | None, tail: bytes
) -> None:
    data = bytearray(gzip.compress(_VALID, mtime=0) if gz else _VALID)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    data += tail
    path = write(tmp_path / "fuzz", bytes(data))
    try:
        out = read_idx(path)
    except DataError:
        return
    assert out.dtype == np.uint8
    assert 1 <= out.ndim <= 4
