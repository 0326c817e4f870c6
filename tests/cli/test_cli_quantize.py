"""``quanta quantize`` in-process: exit codes, files written (or not), one-line errors."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from quanta.cli import main
from quanta.graph import load_model

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def model_path(make_convnet: MakeConvnet, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save_model(make_convnet(), path)
    return path


@pytest.fixture
def calib_path(make_images: MakeImages, tmp_path: Path) -> Path:
    path = tmp_path / "calib.npz"
    np.savez(path, image=make_images(16))
    return path


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("quanta: error:")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def op_counts(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in load_model(path).graph.node)


# --- success ----------------------------------------------------------------------------------


def test_static_with_calibration(
    run: Run, model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    out_path = tmp_path / "int8.onnx"
    code, out, err = run("quantize", model_path, "-o", out_path, "--calibration", calib_path)
    assert code == 0, err
    assert f"static: wrote {out_path}" in out
    assert (
        "calibrated 2 activation tensors on 16 samples" in err
    )  # input, conv+relu; logits stay float
    counts = op_counts(out_path)
    assert counts["QuantizeLinear"] == 4 and counts["Relu"] == 0  # logits stay float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "int8.onnx", "model.onnx"]


def test_static_flags_reach_the_config(
    run: Run, model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    out_path = tmp_path / "int8.onnx"
    code, _, err = run(
        "quantize", model_path, "-o", out_path, "--calibration", calib_path,
        "--per-tensor", "--activation-type", "uint8", "--samples", "5",
    )  # fmt: skip
    assert code == 0, err
    assert "on 5 samples" in err
    model = load_model(out_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits["conv.weight_s"].shape == ()  # --per-tensor
    assert inits["image_zp"].dtype == np.uint8  # --activation-type uint8


def test_no_compact_stores_every_parameter(
    run: Run, model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    paths = {flag: tmp_path / f"int8{flag}.onnx" for flag in ("", "--no-compact")}
    for flag, path in paths.items():
        code, _, err = run(
            "quantize", model_path, "-o", path, "--calibration", calib_path, "--no-fallback",
            *([flag] if flag else []),
        )  # fmt: skip
        assert code == 0, err
    plain, small = load_model(paths["--no-compact"]), load_model(paths[""])
    assert paths[""].stat().st_size < paths["--no-compact"].stat().st_size
    for model, muls in ((plain, 0), (small, 2)):  # Conv and Gemm bias scales
        assert Counter(n.op_type for n in model.graph.node)["Mul"] == muls
    dqs = [n for n in plain.graph.node if n.op_type == "DequantizeLinear"]
    assert all(len(n.input) == 3 for n in dqs)


@pytest.mark.parametrize(("mode", "op"), [("dynamic", "MatMulInteger"), ("fp16", "Cast")])
def test_dynamic_and_fp16(run: Run, model_path: Path, tmp_path: Path, mode: str, op: str) -> None:
    out_path = tmp_path / f"{mode}.onnx"
    code, out, err = run("quantize", model_path, "-o", out_path, "--mode", mode)
    assert code == 0, err
    assert f"{mode}: wrote {out_path}" in out
    assert op_counts(out_path)[op] >= 1


def test_unquantizable_node_is_a_warning(
    run: Run, make_convnet: MakeConvnet, calib_path: Path, tmp_path: Path
) -> None:
    model_path = tmp_path / "softmax.onnx"
    onnx.save_model(make_convnet(head="Softmax"), model_path)
    code, _, err = run(
        "quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", calib_path
    )
    assert code == 0, err
    assert "warning:" in err and "'head' (Softmax) stays float" in err


def test_final_sigmoid_is_a_note(
    run: Run, make_convnet: MakeConvnet, calib_path: Path, tmp_path: Path
) -> None:
    # a Sigmoid runs int8 when an int8 op reads it; a final one stays float, which needs no action
    model_path = tmp_path / "sigmoid.onnx"
    onnx.save_model(make_convnet(head="Sigmoid"), model_path)
    code, _, err = run(
        "quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", calib_path
    )
    assert code == 0, err
    assert "note: node 'head' (Sigmoid) stays float" in err and "warning:" not in err


# --- user errors: exit 2, one line, nothing written -------------------------------------------


def test_bad_mode(run: Run, model_path: Path, tmp_path: Path) -> None:
    code, _, err = run("quantize", model_path, "-o", tmp_path / "q.onnx", "--mode", "int4")
    assert_one_line_error(code, err, "--mode 'int4'", "static, dynamic, fp16")
    assert not (tmp_path / "q.onnx").exists()


def test_bad_activation_type(run: Run, model_path: Path, tmp_path: Path) -> None:
    code, _, err = run(
        "quantize", model_path, "-o", tmp_path / "q.onnx", "--activation-type", "int16"
    )
    assert_one_line_error(code, err, "--activation-type 'int16'")


def test_missing_model_file(run: Run, calib_path: Path, tmp_path: Path) -> None:
    out_path = tmp_path / "q.onnx"
    code, _, err = run(
        "quantize", tmp_path / "missing.onnx", "-o", out_path, "--calibration", calib_path
    )
    assert_one_line_error(code, err, "missing.onnx", "does not exist")
    assert not out_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz"]


def test_static_without_calibration_on_a_non_mnist_model(
    run: Run, model_path: Path, tmp_path: Path
) -> None:
    code, _, err = run("quantize", model_path, "-o", tmp_path / "q.onnx")  # 1x8x8 input
    assert_one_line_error(code, err, "--calibration")
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_npz_missing_the_input(run: Run, model_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((4, 1, 8, 8), np.float32))
    code, _, err = run("quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", bad)
    assert_one_line_error(code, err, "'image'")
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_npz_of_the_wrong_shape(run: Run, model_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.zeros((4, 1, 28, 28), np.float32))
    code, _, err = run("quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", bad)
    assert_one_line_error(code, err, "expects (N, 1, 8, 8)")


def test_calibration_with_a_non_static_mode(
    run: Run, model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        "quantize", model_path, "-o", tmp_path / "q.onnx", "--mode", "fp16",
        "--calibration", calib_path,
    )  # fmt: skip
    assert_one_line_error(code, err, "--calibration", "--mode fp16")


@pytest.mark.parametrize("spelling", ["same", "dotted"])
def test_output_equal_to_input_is_refused(
    run: Run, model_path: Path, tmp_path: Path, spelling: str
) -> None:
    before = sha256(model_path)
    out_path = model_path if spelling == "same" else f"{tmp_path}/./{model_path.name}"
    code, _, err = run("quantize", model_path, "-o", out_path, "--mode", "fp16")
    assert_one_line_error(code, err, "is also an input")
    assert sha256(model_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_output_directory_missing(run: Run, model_path: Path, tmp_path: Path) -> None:
    code, _, err = run("quantize", model_path, "-o", tmp_path / "no" / "q.onnx", "--mode", "fp16")
    assert_one_line_error(code, err, "does not exist")


def test_already_quantized_input(run: Run, model_path: Path, tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.onnx"
    assert run("quantize", model_path, "-o", dynamic, "--mode", "dynamic")[0] == 0
    code, _, err = run("quantize", dynamic, "-o", tmp_path / "again.onnx", "--mode", "fp16")
    assert_one_line_error(code, err, "already quantized")
