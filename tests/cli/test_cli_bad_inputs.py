"""Every bad input of issue 6, through the CLI: exit 2, one line naming the problem, no
traceback, no output file (nor a temporary one), and every input file byte-for-byte unchanged."""

from __future__ import annotations

import argparse
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from conftest import build_convnet, random_images
from quanta.cli import main

Case = Callable[[Path], tuple[list[str], str]]  # tmp dir -> (argv, expected fragment)


def _model(tmp: Path, model: onnx.ModelProto | None = None, name: str = "m.onnx") -> Path:
    path = tmp / name
    onnx.save_model(model or build_convnet(), path)
    return path


def _npz(tmp: Path, name: str = "c.npz", **arrays: np.ndarray) -> Path:
    path = tmp / name
    np.savez(path, **(arrays or {"image": random_images(8)}))
    return path


def _quantize(tmp: Path, model: Path, calib: Path | None = None) -> list[str]:
    return ["quantize", str(model), "-o", str(tmp / "out.onnx"),
            "--calibration", str(calib or _npz(tmp))]  # fmt: skip


def _idx(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _mnist_dir(tmp: Path, corrupt: str, how: Callable[[bytes], bytes]) -> Path:
    root = tmp / "mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10),
    }
    for name, arr in files.items():
        data = _idx(arr)
        (root / name).write_bytes(how(data) if name == corrupt else data)
    return root


def _train_on(tmp: Path, corrupt: str, how: Callable[[bytes], bytes]) -> list[str]:
    data = _mnist_dir(tmp, corrupt, how)
    return ["train", "-o", str(tmp / "out.onnx"), "--epochs", "1", "--data", str(data)]


def _graph(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto] | None = None, opset: int = 20
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits or [],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _external(tmp: Path, location: str) -> list[str]:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    (tmp / "outside.bin").write_bytes(b"\0" * 64)
    sub = tmp / "model"
    sub.mkdir()
    path = sub / "m.onnx"
    path.write_bytes(
        _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]).SerializeToString()
    )
    return _quantize(tmp, path)


def _too_big(tmp: Path) -> list[str]:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.dims[:] = [4, 1_000_000]  # declares 16 MB, holds 64 bytes
    path = tmp / "m.onnx"
    path.write_bytes(
        _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]).SerializeToString()
    )
    return _quantize(tmp, path)


def _unknown_domain(tmp: Path) -> list[str]:
    model = _graph([helper.make_node("Evil", ["x"], ["y"], domain="com.evil")])
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    return _quantize(tmp, _model(tmp, model))


def _shapeless() -> onnx.ModelProto:
    model = build_convnet()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    return model


def _qdq_convnet() -> onnx.ModelProto:
    """The convnet with a QuantizeLinear/DequantizeLinear pair on its input: int8 ops to verify."""
    model = build_convnet()
    graph = model.graph
    graph.initializer.extend(
        [numpy_helper.from_array(np.array(1 / 255, np.float32), "s"),
         numpy_helper.from_array(np.array(0, np.uint8), "z")]
    )  # fmt: skip
    for node in graph.node:
        node.input[:] = ["image_dq" if i == "image" else i for i in node.input]
    graph.node.insert(0, helper.make_node("DequantizeLinear", ["image_q", "s", "z"], ["image_dq"]))
    graph.node.insert(0, helper.make_node("QuantizeLinear", ["image", "s", "z"], ["image_q"]))
    return model


def _quantized_model(tmp: Path) -> list[str]:
    first = tmp / "q.onnx"
    assert main(_quantize(tmp, _model(tmp))[:3] + [str(first), "--calibration", str(_npz(tmp)),
                "--no-fallback"]) == 0  # fmt: skip
    return _quantize(tmp, first)


def _not_weights_only(tmp: Path) -> list[str]:
    path = tmp / "evil.pt"
    torch.save({"payload": argparse.Namespace(cmd="rm -rf /")}, path)  # an arbitrary object
    return ["qat", "--from-lenet", str(path), "-o", str(tmp / "out.onnx"), "--epochs", "1"]


CASES: dict[str, tuple[Case, str]] = {
    "model missing": (lambda t: _quantize(t, t / "nope.onnx"), "does not exist"),
    "model empty": (lambda t: _quantize(t, _write(t / "m.onnx", b"")), "is empty"),
    "model truncated": (
        lambda t: _quantize(t, _write(t / "m.onnx", build_convnet().SerializeToString()[:300])),
        "not an ONNX model",
    ),
    "not ONNX": (
        lambda t: _quantize(t, _write(t / "m.onnx", b"<html>hello</html>" * 20)),
        "not an ONNX model",
    ),  # fmt: skip
    "fails the checker": (
        lambda t: _quantize(t, _model(t, _graph([helper.make_node("Relu", ["nothere"], ["y"])]))),
        "fails the ONNX checker",
    ),
    "unknown op domain": (_unknown_domain, "com.evil"),
    "input shape missing": (lambda t: _quantize(t, _model(t, _shapeless())), "'shape'"),
    "opset too new": (
        lambda t: _quantize(
            t, _model(t, _graph([helper.make_node("Relu", ["x"], ["y"])], opset=99))
        ),
        "opset 99",
    ),
    "already quantized": (_quantized_model, "already quantized"),
    "external data outside the directory": (
        lambda t: _external(t, "../outside.bin"),
        "path traversal",
    ),
    "external data absolute path": (
        lambda t: _external(t, str(t / "outside.bin")),
        "path traversal",
    ),
    "tensor larger than the file": (_too_big, "holds 64 bytes"),
    "npz missing an input": (
        lambda t: _quantize(t, _model(t), _npz(t, pixels=random_images(4), mask=random_images(4))),
        "missing",
    ),
    "npz extra input": (
        lambda t: _quantize(t, _model(t), _npz(t, image=random_images(4), extra=random_images(4))),
        "extra",
    ),
    "npz wrong rank": (
        lambda t: _quantize(t, _model(t), _npz(t, image=random_images(4)[:, 0])),
        "expects",
    ),
    "npz wrong shape": (
        lambda t: _quantize(t, _model(t), _npz(t, image=random_images(4, hw=9))),
        "expects",
    ),
    "npz wrong dtype": (
        lambda t: _quantize(t, _model(t), _npz(t, image=np.ones((4, 1, 8, 8), np.int64))),
        "floating point",
    ),
    "npz NaN": (
        lambda t: _quantize(t, _model(t), _npz(t, image=np.full((4, 1, 8, 8), np.nan, np.float32))),
        "NaN",
    ),
    "npz Inf": (
        lambda t: _quantize(t, _model(t), _npz(t, image=np.full((4, 1, 8, 8), np.inf, np.float32))),
        "Inf",
    ),
    "npz zero samples": (
        lambda t: _quantize(t, _model(t), _npz(t, image=np.zeros((0, 1, 8, 8), np.float32))),
        "0 samples",
    ),
    "eval npz wrong shape (bench)": (
        lambda t: [
            "bench",
            str(_model(t)),
            "--data",
            str(_npz(t, image=random_images(4, hw=9))),
            "--json",
            str(t / "out.json"),
        ],
        "expects",
    ),  # fmt: skip
    "eval npz wrong dtype (verify)": (
        lambda t: [
            "verify",
            str(_model(t, _qdq_convnet())),
            "--inputs",
            str(_npz(t, image=np.ones((4, 1, 8, 8), np.complex64))),
            "--json",
            str(t / "out.json"),
        ],
        "numeric",
    ),  # fmt: skip
    "npz not an npz": (lambda t: _quantize(t, _model(t), _write(t / "c.npz", b"garbage")), "npz"),
    "IDX wrong magic": (
        lambda t: _train_on(t, "train-labels-idx1-ubyte", lambda b: b"\x12\x34" + b[2:]),
        "magic",
    ),
    "IDX inconsistent sizes": (
        lambda t: _train_on(t, "train-labels-idx1-ubyte", lambda b: _idx(np.zeros(7))),
        "7",
    ),
    "IDX truncated": (
        lambda t: _train_on(t, "t10k-images-idx3-ubyte", lambda b: b[:-100]),
        "truncated",
    ),
    "checkpoint not weights-only": (_not_weights_only, "weights-only"),
    "output equals input": (
        lambda t: [
            "quantize",
            str(_model(t)),
            "-o",
            str(t / "m.onnx"),
            "--calibration",
            str(_npz(t)),
            "--force",
        ],
        "also an input",
    ),  # fmt: skip
    "no latency check outside static": (
        lambda t: [
            "quantize",
            str(_model(t)),
            "-o",
            str(t / "out.onnx"),
            "--mode",
            "dynamic",
            "--no-latency-check",
        ],
        "--no-latency-check is only used with --mode static",
    ),  # fmt: skip
    "weight rounding outside static and auto": (
        lambda t: [
            "quantize",
            str(_model(t)),
            "-o",
            str(t / "out.onnx"),
            "--mode",
            "dynamic",
            "--weight-rounding",
            "gptq",
        ],
        "--weight-rounding gptq is only used with --mode static or auto",
    ),  # fmt: skip
    "equalize outside static and auto": (
        lambda t: [
            "quantize",
            str(_model(t)),
            "-o",
            str(t / "out.onnx"),
            "--mode",
            "fp16",
            "--equalize",
        ],
        "--equalize is only used with --mode static or auto, not --mode fp16",
    ),  # fmt: skip
    "unknown weight rounding": (
        lambda t: [
            "quantize",
            str(_model(t)),
            "-o",
            str(t / "out.onnx"),
            "--calibration",
            str(_npz(t)),
            "--weight-rounding",
            "adaround",
        ],
        "--weight-rounding 'adaround' is not known; expected auto, nearest or gptq",
    ),  # fmt: skip
    "output directory missing": (
        lambda t: [
            "quantize",
            str(_model(t)),
            "-o",
            str(t / "no" / "out.onnx"),
            "--calibration",
            str(_npz(t)),
        ],
        "does not exist",
    ),  # fmt: skip
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _snapshot(root: Path) -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build, fragment = CASES[case]
    argv = build(tmp_path)
    capsys.readouterr()
    before = _snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("quanta: error:"), err
    assert "Traceback" not in err
    assert fragment in lines[0], lines[0]
    after = _snapshot(tmp_path)
    assert after == before, "an input changed or an output (or temporary) file appeared"


def test_existing_output_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _quantize(tmp_path, _model(tmp_path)) + ["--no-fallback"]
    out = tmp_path / "out.onnx"
    out.write_bytes(b"precious")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exists; pass --force" in err and out.read_bytes() == b"precious"
    assert main([*argv, "--force"]) == 0
    assert onnx.load(out).graph.node


def test_read_only_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    argv = _quantize(tmp_path, _model(tmp_path))
    real_access = __import__("os").access
    # (tests run as root here, where chmod cannot take write access away: simulate it)
    monkeypatch.setattr(
        "os.access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode)
    )
    assert main(argv) == 2
    assert "not writable" in capsys.readouterr().err


def test_interrupt_leaves_no_partial_file_and_keeps_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [*_quantize(tmp_path, _model(tmp_path)), "--no-fallback", "--force"]
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous result")

    def interrupted(model: onnx.ModelProto, path: object, *a: object, **k: object) -> None:
        Path(str(path)).write_bytes(b"half a fi")  # the write had started
        raise KeyboardInterrupt

    monkeypatch.setattr("onnx.save_model", interrupted)
    assert main(argv) == 130
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "m.onnx", "out.onnx"]


def test_dynamic_input_shapes_are_taken_from_the_data(tmp_path: Path) -> None:
    model = build_convnet()
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim, "NCHW", strict=True):
        dim.dim_param = name  # every dimension symbolic
    argv = _quantize(tmp_path, _model(tmp_path, model)) + ["--no-fallback"]
    assert main(argv) == 0


def test_one_calibration_sample_is_enough(tmp_path: Path) -> None:
    argv = _quantize(tmp_path, _model(tmp_path), _npz(tmp_path, image=random_images(1)))
    assert main(argv) == 0
    assert (tmp_path / "out.onnx").exists()
