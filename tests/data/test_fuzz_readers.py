"""Fuzzing the readers of untrusted files: whatever the bytes, a QuantaError or a valid result."""

from __future__ import annotations

import io
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import build_convnet
from quanta.data import load_npz, read_idx
from quanta.errors import QuantaError
from quanta.graph import load_model

# derandomize: the same examples on every run (CI stays deterministic); explore more with
# QUANTA_FUZZ_EXAMPLES=5000 pytest tests/data/test_fuzz_readers.py
FUZZ = settings(
    max_examples=int(os.environ.get("QUANTA_FUZZ_EXAMPLES", "60")),
    derandomize="QUANTA_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _valid_idx() -> bytes:
    arr = np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5)
    return struct.pack(">BBBB3I", 0, 0, 8, 3, 2, 5, 5) + arr.tobytes()


def _valid_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, image=np.ones((3, 1, 4, 4), np.float32), labels=np.arange(3))
    return buf.getvalue()


VALID = {"idx": _valid_idx(), "npz": _valid_npz(), "onnx": build_convnet().SerializeToString()}


@st.composite
def corrupted(draw: st.DrawFn, kind: str) -> bytes:
    """The valid file with bytes flipped, a slice cut out, or cut short, or pure noise."""
    data = bytearray(VALID[kind])
    how = draw(st.sampled_from(["flip", "cut", "truncate", "noise", "grow"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif how == "cut":
        i = draw(st.integers(0, len(data) - 1))
        del data[i : i + draw(st.integers(1, 64))]
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "grow":
        data += draw(st.binary(min_size=1, max_size=64))
    else:
        data = bytearray(draw(st.binary(max_size=256)))
    return bytes(data)


def _read(kind: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{kind}"
        path.write_bytes(data)
        try:
            if kind == "idx":
                read_idx(path)
            elif kind == "npz":
                load_npz(path)
            else:
                load_model(path)
        except QuantaError:
            pass  # the one acceptable failure: a clear, user-facing error


@FUZZ
@given(corrupted("idx"))
def test_idx_reader_under_corruption(data: bytes) -> None:
    _read("idx", data)


@FUZZ
@given(corrupted("npz"))
def test_npz_reader_under_corruption(data: bytes) -> None:
    _read("npz", data)


@FUZZ
@given(corrupted("onnx"))
def test_onnx_loader_under_corruption(data: bytes) -> None:
    _read("onnx", data)
