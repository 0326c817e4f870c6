"""tradeoff_png: a valid PNG, byte-identical for the same inputs, written without leftovers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from quanta.report.plot import tradeoff_png
from quanta.runtime import BenchResult, KernelCounts, Latency

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _results() -> list[BenchResult]:
    kernels = KernelCounts(
        helper.make_graph(
            [helper.make_node("Conv", ["x"], ["y"])],
            "optimized",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
            [],
        )
    )
    rows = [("float", 13_100_000, 0.99, 1.0), ("fp16", 6_550_000, 0.99, 1.1),
            ("static", 3_300_000, 0.988, 0.4), ("no_b1", 3_300_000, None, None)]  # fmt: skip
    return [
        BenchResult(
            name,
            f"{name}.onnx",
            size,
            acc,
            {} if ms is None else {1: Latency(1, ms, ms, 10)},
            kernels,
            1,
        )  # fmt: skip
        for name, size, acc, ms in rows
    ]


def test_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "tradeoff.png"
    tradeoff_png(_results(), path, "LeNet on MNIST")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert data.endswith(b"IEND\xaeB`\x82")
    assert b"Software" not in data  # no metadata that would change from run to run
    assert [p.name for p in tmp_path.iterdir()] == ["tradeoff.png"]


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    tradeoff_png(_results(), a, "title")
    tradeoff_png(_results(), b, "title")
    assert a.read_bytes() == b.read_bytes()


def test_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "tradeoff.png"
    path.write_bytes(b"old")
    tradeoff_png(_results()[:1], path, "one variant")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_png_decodes(tmp_path: Path) -> None:
    import matplotlib.image

    path = tmp_path / "tradeoff.png"
    tradeoff_png(_results(), path, "title")
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert np.ptp(pixels) > 0  # not a blank image
