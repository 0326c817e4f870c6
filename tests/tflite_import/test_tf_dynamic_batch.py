"""TensorFlow's own float ``.tflite`` of a Keras model with a free batch: the converter writes
``shape_signature`` -1 on the batch axis and computes Flatten's new shape at run time (SHAPE ->
STRIDED_SLICE -> PACK -> RESHAPE). The import keeps the batch free, leaves that computation out,
and matches Keras and LiteRT; the three ``quanta quantize -o x.tflite`` variants run in LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tflite

pytest.importorskip("tensorflow", reason="needs TensorFlow (quanta[tf]) to write the .tflite")
litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)

import tensorflow as tf  # noqa: E402

from quanta.cli import main  # noqa: E402
from quanta.runtime import run_model  # noqa: E402
from quanta.runtime.litert import tflite_operators as _operators  # noqa: E402
from quanta.tflite.reader import tflite_to_onnx  # noqa: E402

SHAPE = (12, 12, 1)  # NHWC, as Keras has it
NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def keras_and_tflite(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),  # batch left free: shape_signature (-1, 12, 12, 1)
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path = tmp_path_factory.mktemp("tfdyn") / "m.tflite"
    path.write_bytes(data)
    return model, path


def _litert(data: bytes, x: np.ndarray) -> np.ndarray:
    """``data`` on all of ``x`` at once (its input resized to x's batch), float or uint8 in."""
    it = litert.Interpreter(model_content=data, num_threads=1)
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], list(x.shape))
    it.allocate_tensors()
    feed = x
    if d["dtype"] != np.float32:
        scale, zp = d["quantization"]
        info = np.iinfo(d["dtype"])
        feed = np.clip(np.rint(x / scale) + zp, info.min, info.max).astype(d["dtype"])
    it.set_tensor(d["index"], feed)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def test_the_converter_computes_the_flatten_shape(keras_and_tflite: tuple[object, Path]) -> None:
    # NOTE: what makes this file the case at hand; if a TensorFlow release stops writing it,
    # this test says so instead of the others passing on an easier file
    ops = _operators(keras_and_tflite[1].read_bytes())
    assert {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"} <= set(ops), ops


def test_import_keeps_the_batch_free_and_matches_keras_and_litert(
    keras_and_tflite: tuple[object, Path],
) -> None:
    model, path = keras_and_tflite
    data = path.read_bytes()
    onnx_model = tflite_to_onnx(data)
    (inp,) = onnx_model.graph.input
    (out,) = onnx_model.graph.output
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == list(SHAPE)
    assert out.type.tensor_type.shape.dim[0].dim_param == "N"
    # the run-time shape computation is left out: the Reshape reads a constant (-1, 144)
    op_types = {n.op_type for n in onnx_model.graph.node}
    assert not op_types & {"Shape", "Slice", "Unsqueeze", "Concat"}, op_types
    (reshape,) = [n for n in onnx_model.graph.node if n.op_type == "Reshape"]
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in onnx_model.graph.initializer}
    assert consts[reshape.input[1]].tolist() == [-1, 6 * 6 * 4]
    x = _images(7, seed=1)  # a batch the file's example shape (1) does not have
    got = run_model(onnx_model, {inp.name: x})[0]
    want = np.asarray(model.predict(x, verbose=0))  # type: ignore[attr-defined]
    assert got.shape == want.shape == (7, 5)
    # float32 sums in another order: measured 3.4e-7 of the largest output (LiteRT: 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(got, _litert(data, x), rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(
    # (mode, extra flags, bound on max |variant - Keras| / max |Keras|): measured 3.8e-4 (fp16),
    # 8.6e-3 (dynamic), 9.7e-3 (static, uint8 input as TensorFlow's full-integer file takes);
    # top-1 agreed on all 16
    ("mode", "flags", "bound"),
    [
        ("fp16", [], 2e-3),
        ("dynamic", [], 5e-2),
        ("static", ["--calibration", "CALIB", "--no-latency-check", "--input-uint8"], 5e-2),
    ],
)
def test_cli_variants_run_in_litert(
    keras_and_tflite: tuple[object, Path], tmp_path: Path, mode: str, flags: list[str],
    bound: float,
) -> None:  # fmt: skip
    model, path = keras_and_tflite
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=_images(64, seed=2))
    out = tmp_path / f"m_{mode}.tflite"
    argv = ["quantize", str(path), "-o", str(out), "--mode", mode]
    assert main(argv + [str(calib) if f == "CALIB" else f for f in flags]) == 0
    x = _images(16, seed=3)
    want = np.asarray(model.predict(x, verbose=0))  # type: ignore[attr-defined]
    got = _litert(out.read_bytes(), x)
    assert got.shape == want.shape == (16, 5)
    assert np.abs(got - want).max() <= bound * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_a_baked_batch_size_fixes_the_inputs(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.UpSampling2D(2, interpolation="bilinear"),  # RESIZE_BILINEAR
            keras.layers.Conv2D(2, 3),
        ]
    )
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert "RESIZE_BILINEAR" in _operators(data)
    onnx_model = tflite_to_onnx(data)
    (inp,) = onnx_model.graph.input
    # NOTE: ONNX Resize's sizes hold the batch too, so the import fixes it at the file's 1
    # rather than write a model that fails at any other batch
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, *SHAPE]
    x = _images(1, seed=4)
    got = run_model(onnx_model, {inp.name: x})[0]
    want = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_a_slice_that_keeps_the_whole_batch_keeps_it_free() -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Cropping2D(((1, 2), (3, 0))),  # a slice of H and W, the batch whole
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    ops = _operators(data)
    assert {"STRIDED_SLICE", "SLICE"} & set(ops), ops
    onnx_model = tflite_to_onnx(data)
    (inp,) = onnx_model.graph.input
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    x = _images(3, seed=5)
    got = run_model(onnx_model, {inp.name: x})[0]
    want = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
