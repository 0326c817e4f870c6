"""Keras and SavedModel in (``quanta[tf]``): the imported float model against Keras's own
predictions, then ``quanta quantize`` and ``quanta.quantize`` from every source form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

pytest.importorskip("tensorflow", reason="needs quanta[tf] (pip install 'quanta[tf]')")

import tensorflow as tf  # noqa: E402
from keras_models import KerasFiles, images, save_all, tiny_convnet, two_input_net  # noqa: E402

import quanta  # noqa: E402
from quanta.cli import main  # noqa: E402
from quanta.keras_in import keras_to_onnx  # noqa: E402
from quanta.runtime import run_model  # noqa: E402

Run = Callable[..., tuple[int, str, str]]
FIXED = {"latency_check": False}  # bytes that depend only on the model, data and options


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> KerasFiles:
    return save_all(tiny_convnet(), tmp_path_factory.mktemp("keras"))


@pytest.fixture(scope="module")
def calib_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, image=images(64, seed=2))
    return path


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def source(files: KerasFiles, kind: str) -> Any:
    return {"object": files.model, "keras": files.keras, "h5": files.h5}.get(
        kind, files.saved_model
    )


def predict(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    (name,) = [i.name for i in model.graph.input]
    return run_model(model, {name: x})[0]


@pytest.mark.parametrize("kind", ["object", "keras", "h5", "saved_model"])
def test_imported_model_matches_keras(files: KerasFiles, kind: str) -> None:
    x = images(8)
    model = keras_to_onnx(source(files, kind))
    assert [i.name for i in model.graph.input] == ["image"]  # the Keras name, not the converter's
    expected = files.model.predict(x, verbose=0)
    # float32 sums in another order (TFLite's kernels vs Keras's): a few ulps of probabilities
    np.testing.assert_allclose(predict(model, x), expected, rtol=0, atol=1e-6)


def test_two_inputs_keep_their_keras_names(tmp_path: Path) -> None:
    net = two_input_net()
    net.save(tmp_path / "two.keras")
    model = keras_to_onnx(tmp_path / "two.keras")
    rng = np.random.default_rng(4)
    feeds = {
        "image": rng.random((6, 8, 8, 3), dtype=np.float32),
        "extra": rng.random((6, 4), dtype=np.float32),
    }
    assert sorted(i.name for i in model.graph.input) == ["extra", "image"]
    expected = net.predict([feeds["image"], feeds["extra"]], verbose=0)
    np.testing.assert_allclose(run_model(model, feeds)[0], expected, rtol=0, atol=1e-5)


def test_imported_model_keeps_nhwc_and_float_weights(files: KerasFiles) -> None:
    model = keras_to_onnx(files.keras)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 16, 16, 3]  # NHWC, batch traced at 1
    assert {t.data_type for t in model.graph.initializer} <= {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.INT64,
    }
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "MaxPool", "AveragePool", "Softmax"} <= ops


@pytest.mark.parametrize(
    ("kind", "mode"), [("keras", "static"), ("h5", "dynamic"), ("saved_model", "fp16")]
)
def test_cli_quantizes_each_source_to_onnx(
    files: KerasFiles, calib_npz: Path, tmp_path: Path, run: Run, kind: str, mode: str
) -> None:
    out = tmp_path / "q.onnx"
    flags = ["--calibration", calib_npz, "--no-latency-check"] if mode == "static" else []
    code, stdout, stderr = run("quantize", source(files, kind), "-o", out, "--mode", mode, *flags)
    assert code == 0, stderr
    assert stdout.startswith(f"{mode}: wrote {out}")
    x = images(32, seed=3)
    got, expected = predict(onnx.load(out), x), files.model.predict(x, verbose=0)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    np.testing.assert_allclose(got, expected, atol=0.05)


@pytest.mark.parametrize("kind", ["object", "saved_model"])
def test_api_from_tf_data_gives_the_cli_bytes(
    files: KerasFiles, calib_npz: Path, tmp_path: Path, run: Run, kind: str
) -> None:
    # the CLI reads the .keras file the object was saved to (the same tensor names), or the
    # SavedModel directory (its own "StatefulPartitionedCall/..." names)
    cli_source = files.keras if kind == "object" else files.saved_model
    out = tmp_path / "cli.onnx"
    argv = ["quantize", cli_source, "-o", out, "--calibration", calib_npz, "--no-latency-check"]
    assert run(*argv)[0] == 0
    x = np.load(calib_npz)["image"]
    labels = np.arange(len(x)) % 10
    if kind == "object":
        data = tf.data.Dataset.from_tensor_slices((x, labels)).batch(10)  # (x, y) batches
    else:
        data = tf.data.Dataset.from_tensor_slices(x).batch(16)  # batches of arrays
    q = quanta.quantize(source(files, kind), data, **FIXED)
    assert q.save(tmp_path / "api.onnx").read_bytes() == out.read_bytes()


def test_nchw_calibration_for_a_keras_model_is_one_line(
    files: KerasFiles, tmp_path: Path, run: Run
) -> None:
    calib = tmp_path / "nchw.npz"
    np.savez(calib, image=images(16).transpose(0, 3, 1, 2))  # (N, 3, 16, 16)
    out = tmp_path / "q.onnx"
    code, stdout, stderr = run("quantize", files.keras, "-o", out, "--calibration", calib)
    assert code == 2
    line = stderr.strip().splitlines()[-1]
    assert "takes NHWC (1, 16, 16, 3)" in line and "(N, 3, 16, 16), NCHW? transpose" in line
    assert "transpose(0, 2, 3, 1)" in line and not out.exists()
    with pytest.raises(quanta.QuantaError, match="NCHW"):
        quanta.quantize(files.model, images(16).transpose(0, 3, 1, 2))


def test_a_broken_keras_file_is_one_line(tmp_path: Path, run: Run) -> None:
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK not a zip")
    out = tmp_path / "q.onnx"
    code, _, stderr = run("quantize", bad, "-o", out, "--mode", "fp16")
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert "cannot be loaded by Keras" in line and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize("mode", ["static", "fp16", "dynamic"])
def test_cli_writes_each_tflite_variant(
    files: KerasFiles, calib_npz: Path, tmp_path: Path, run: Run, mode: str
) -> None:
    out = tmp_path / "q.tflite"
    flags = ["--calibration", calib_npz] if mode == "static" else []
    code, _, stderr = run("quantize", files.keras, "-o", out, "--mode", mode, *flags)
    assert code == 0, stderr
    x = images(32, seed=3)
    got, expected = litert_predict(out, x), files.model.predict(x, verbose=0)
    if mode != "static":
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
        return
    # NOTE: the full-integer file's SOFTMAX writes TFLite's fixed int8 grid (1/256, -128), and
    # this untrained net's probabilities all lie in [0.085, 0.115] with a median gap of 0.003
    # between the top two: 13 of the 32 samples tie on the grid, where argmax takes the first
    # class. TensorFlow's own full-integer converter, on the same calibration data, agrees on
    # top-1 for the same 25 of 32. So: each probability within one output step of Keras's, and
    # Keras's top class among the tied maxima. Measured: 0.0021 (TensorFlow's file: 0.0021);
    # with the average pool written onto its output's grid without a QUANTIZE, 0.0054
    assert np.abs(got - expected).max() <= 1 / 256, np.abs(got - expected).max()
    top = expected.argmax(1)
    assert (got[np.arange(len(x)), top] == got.max(1)).all()


def litert_predict(path: Path, x: np.ndarray) -> np.ndarray:
    """LiteRT's outputs, one sample a call, (de)quantized where the file's input/output is int."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = litert.Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for sample in x:
        feed = sample[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            feed = np.clip(np.rint(feed / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], feed)
        interpreter.invoke()
        y = interpreter.get_tensor(outp["index"])
        if outp["dtype"] != np.float32:
            scale, zero = outp["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        rows.append(y[0])
    return np.stack(rows)
