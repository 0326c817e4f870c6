"""A model whose every layer computes in float with int8-stored weights (what static mode writes
where int8 compute buys no speed or loses the answers): ``verify`` and ``inspect`` say so in one
line instead of blaming the input, and ``export-tflite`` writes LiteRT's dynamic-range form
(int8 weights, float activations), checked against ONNX Runtime running the ONNX model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from quanta.cli import main
from quanta.graph.prepare import prepare
from quanta.graph.weight_only import compress_float_weights, computes_int8, decoded_weights
from quanta.runtime import run_model

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


@pytest.fixture
def weight_only(make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path) -> Path:
    """The convnet (32 channels: Conv and Gemm weights large enough to store int8) with every
    weight stored int8 behind a decoder, nothing else quantized; beside it its float model and
    samples."""
    float_model = make_convnet(channels=32)
    onnx.save_model(float_model, tmp_path / "float.onnx")
    model = prepare(float_model)
    assert compress_float_weights(model) == 2
    assert not computes_int8(model) and decoded_weights(model) == 2
    onnx.save_model(model, tmp_path / "w8.onnx")
    np.savez(tmp_path / "x.npz", image=make_images(8, seed=3))
    return tmp_path / "w8.onnx"


def _one_line_error(code: int, capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("quanta: error: ")
    return lines[0]


def test_verify_says_the_model_computes_in_float(
    weight_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = weight_only.parent / "v.json"
    x = str(weight_only.parent / "x.npz")
    code = main(["verify", str(weight_only), "--inputs", x, "--json", str(report)])
    line = _one_line_error(code, capsys)
    assert "computes every layer in float: its 2 int8-stored weight(s) are decoded" in line
    assert "quanta bench" in line and "pass a quantized one" not in line
    assert not report.exists()


def test_inspect_says_the_model_computes_in_float(
    weight_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["inspect", str(weight_only), "--reference", str(weight_only.parent / "float.onnx"),
            "--calibration", str(weight_only.parent / "x.npz")]  # fmt: skip
    line = _one_line_error(main(argv), capsys)
    assert "no quantized activation in this model to inspect: every layer computes in float" in line
    assert "pass the float model it was quantized from" not in line  # the reference was right


def test_export_writes_the_dynamic_range_form(
    weight_only: Path, make_images: MakeImages, capsys: pytest.CaptureFixture[str]
) -> None:
    litert = pytest.importorskip(
        "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
    )
    out = weight_only.with_suffix(".tflite")
    assert main(["export-tflite", str(weight_only), "-o", str(out)]) == 0
    assert "LiteRT's dynamic-range form" in capsys.readouterr().err
    it = litert.Interpreter(model_path=str(out), num_threads=1)
    it.allocate_tensors()
    (inp,), (outp,) = it.get_input_details(), it.get_output_details()
    assert inp["dtype"] == np.float32 and outp["dtype"] == np.float32
    # the Gemm's 10 x 288 weight is int8 in the file; the Conv's 288 values stay float32, as
    # under TFLite's converter (below 1,024 values a weight is not worth a hybrid kernel)
    int8_sizes = [
        int(np.prod(d["shape"])) for d in it.get_tensor_details() if d["dtype"] == np.int8
    ]
    assert int8_sizes == [2880]
    _agrees_with_onnx_runtime(it, weight_only, make_images(16, seed=5))


def _agrees_with_onnx_runtime(it, model: Path, x: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """LiteRT's outputs, sample by sample (NHWC, batch 1), against ONNX Runtime on the ONNX
    model: close, not equal, as LiteRT's hybrid kernels quantize activations on the fly."""
    (inp,), (outp,) = it.get_input_details(), it.get_output_details()
    ys = []
    for sample in x.transpose(0, 2, 3, 1)[:, None]:
        it.set_tensor(inp["index"], sample)
        it.invoke()
        ys.append(it.get_tensor(outp["index"]).copy())
    got = np.concatenate(ys).astype(np.float64)
    (want,) = run_model(onnx.load(str(model)), {"image": x})
    want = want.astype(np.float64)
    cosine = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() > 0.999, cosine
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_export_refuses_uint8_input_for_a_float_compute_model(
    weight_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = weight_only.with_suffix(".tflite")
    code = main(["export-tflite", str(weight_only), "-o", str(out), "--input-uint8"])
    assert "--input-uint8 needs a model that quantizes its input" in _one_line_error(code, capsys)
    assert not out.exists()


@pytest.fixture
def run_time(make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path) -> Path:
    """The same convnet with its Gemm in dynamic int8 (``quantize_dynamic``: the form static
    mode writes where that is faster than float compute) and its Conv weight stored int8."""
    from quanta.graph.dynamic import quantize_dynamic

    float_model = make_convnet(channels=32)
    onnx.save_model(float_model, tmp_path / "float.onnx")
    model = quantize_dynamic(float_model).model
    assert "MatMulInteger" in {n.op_type for n in model.graph.node}
    onnx.save_model(model, tmp_path / "dyn.onnx")
    np.savez(tmp_path / "x.npz", image=make_images(8, seed=3))
    return tmp_path / "dyn.onnx"


def test_verify_says_the_model_quantizes_only_at_run_time(
    run_time: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["verify", str(run_time), "--inputs", str(run_time.parent / "x.npz")])
    line = _one_line_error(code, capsys)
    assert "quantizes only at run time: its 1 dynamic int8 op(s)" in line and "quanta bench" in line


def test_inspect_says_the_model_quantizes_only_at_run_time(
    run_time: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["inspect", str(run_time), "--reference", str(run_time.parent / "float.onnx"),
            "--calibration", str(run_time.parent / "x.npz")]  # fmt: skip
    line = _one_line_error(main(argv), capsys)
    assert "no calibrated int8 activation in this model to inspect: its 1 dynamic int8" in line
    assert "pass the float model it was quantized from" not in line


def test_export_writes_dynamic_int8_gemm_as_a_hybrid_fully_connected(
    run_time: Path, make_images: MakeImages, capsys: pytest.CaptureFixture[str]
) -> None:
    """LiteRT's hybrid FULLY_CONNECTED quantizes its input on every run, as ONNX Runtime's
    DynamicQuantizeMatMul does: oracle ONNX Runtime on the ONNX model."""
    litert = pytest.importorskip(
        "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
    )
    from quanta.runtime.litert import tflite_operators

    out = run_time.with_suffix(".tflite")
    assert main(["export-tflite", str(run_time), "-o", str(out)]) == 0
    assert "quantizes only at run time" in capsys.readouterr().err
    assert "FULLY_CONNECTED" in tflite_operators(out.read_bytes())
    it = litert.Interpreter(model_path=str(out), num_threads=1)
    it.allocate_tensors()
    assert [d["dtype"] for d in it.get_tensor_details() if d["dtype"] == np.int8] == [np.int8]
    _agrees_with_onnx_runtime(it, run_time, make_images(16, seed=5))
