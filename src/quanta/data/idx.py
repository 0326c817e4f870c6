"""Read IDX files, the container format of the MNIST distribution.

Layout (all big-endian): two zero bytes, a type byte (0x08 = unsigned byte), a byte with the
number of dimensions ``ndim``, then ``ndim`` uint32 sizes, then the data in C order. MNIST images
have magic ``0x00000803`` (N, 28, 28) and labels ``0x00000801`` (N,).
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import numpy.typing as npt

from quanta.data._files import read_maybe_gzipped
from quanta.errors import DataError

__all__ = ["read_idx"]

_UBYTE = 0x08
_MAX_NDIM = 4
# The other IDX type codes, named so that an error can say what the file holds instead.
_OTHER_TYPES = {0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


def read_idx(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read an IDX file of unsigned bytes, gzipped or raw.

    Gzip is recognised by the magic bytes ``1f 8b``, not by the file name.

    Args:
        path: The IDX file, e.g. ``t10k-images-idx3-ubyte.gz``.

    Returns:
        A writable ``uint8`` array with the shape the header declares, e.g. ``(10000, 28, 28)``.

    Raises:
        DataError: The file is missing or empty, is corrupt gzip, has a bad magic number, a
            type other than unsigned byte (0x08), ``ndim`` outside 1..4, or a data length that
            is not exactly the product of the dimensions (truncated or trailing bytes).

    Example:
        >>> from quanta.data import bundled_dir, read_idx
        >>> read_idx(bundled_dir() / "t10k-labels-idx1-ubyte.gz").shape
        (10000,)
    """
    name = str(path)
    data = read_maybe_gzipped(path, "IDX file")
    dims = _header_dims(name, data)
    header = 4 + 4 * len(dims)
    _check_data_length(name, dims, len(data) - header)
    # NOTE: copy so that callers get a writable array, not a view of immutable bytes.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _header_dims(name: str, data: bytes) -> tuple[int, ...]:
    """The dimensions the header declares, after checking its magic number, type and ndim."""
    if len(data) < 4:
        raise DataError(
            f"IDX file {name!r} has {len(data)} bytes; expected at least the 4-byte magic number"
        )
    zero0, zero1, dtype, ndim = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"IDX file {name!r} has magic number 0x{magic:08X}; expected 0x000008NN "
            "(two zero bytes, type byte, ndim), e.g. 0x00000803 for images, 0x00000801 for labels"
        )
    if dtype != _UBYTE:
        held = _OTHER_TYPES.get(dtype, "an unknown type")
        raise DataError(
            f"IDX file {name!r} has type byte 0x{dtype:02X} ({held}); "
            f"only 0x{_UBYTE:02X} (unsigned byte) is supported"
        )
    if not 1 <= ndim <= _MAX_NDIM:
        raise DataError(
            f"IDX file {name!r} declares {ndim} dimensions (magic 0x{magic:08X}); "
            f"expected 1 to {_MAX_NDIM}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"IDX file {name!r} is truncated inside its header: {len(data)} bytes, "
            f"expected {header} for {ndim} dimensions"
        )
    return struct.unpack(f">{ndim}I", data[4:header])


def _check_data_length(name: str, dims: tuple[int, ...], got: int) -> None:
    """The data after the header must be exactly the product of the dimensions."""
    expected = math.prod(dims)
    shape = "x".join(str(d) for d in dims)
    if got < expected:
        raise DataError(
            f"IDX file {name!r} is truncated: header declares {shape} = {expected} data bytes, "
            f"file holds {got}"
        )
    if got > expected:
        raise DataError(
            f"IDX file {name!r} has {got - expected} trailing bytes: header declares {shape} = "
            f"{expected} data bytes, file holds {got}"
        )
