"""The classic TFLite variants of a float model (fp16, dynamic range): LiteRT runs each file and
agrees with ONNX Runtime on the float model; sizes and op lists are TFLite's own forms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import quanta
from quanta.cli import main
from quanta.runtime import make_session
from quanta.tflite.float_convert import float_onnx_to_tflite

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]
HW = 16  # 16 channels x 7 x 7 features into the Gemm: weights are most of the file


def _interpreter(data: bytes) -> object:
    # NOTE: without XNNPACK, so the op list is the file's builtin kernels (hybrid for dynamic)
    resolver = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = litert.Interpreter(
        model_content=data, num_threads=1, experimental_op_resolver_type=resolver
    )
    interpreter.allocate_tensors()
    return interpreter


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = _interpreter(data)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x), HW, HW, 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.transpose(0, 2, 3, 1))  # NCHW -> NHWC
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def _float(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {"image": x})[0]


def _ops_and_weights(data: bytes) -> tuple[list[str], dict[str, np.dtype]]:
    interpreter = _interpreter(data)
    ops = [d["op_name"] for d in interpreter._get_ops_details()]
    weights = {t["name"]: t["dtype"] for t in interpreter.get_tensor_details()}
    return ops, weights


@pytest.fixture
def convnet(make_convnet: MakeConvnet) -> onnx.ModelProto:
    return make_convnet(hw=HW, channels=16)


def test_fp16_matches_float_at_half_the_size(
    convnet: onnx.ModelProto, make_images: MakeImages
) -> None:
    x = make_images(200, hw=HW, seed=7)
    want = _float(convnet, x)
    data = float_onnx_to_tflite(convnet, "fp16")
    got = _run(data, x)
    # float16 weights: relative error ~2^-11 per weight, well inside 1e-2 of the largest output
    assert np.abs(got - want).max() <= 1e-2 * np.abs(want).max()
    ratio = len(data) / len(float_onnx_to_tflite(convnet, "float32"))
    assert 0.45 <= ratio <= 0.6, ratio
    ops, tensors = _ops_and_weights(data)
    assert ops == [
        "DEQUANTIZE",
        "CONV_2D",
        "MAX_POOL_2D",
        "RESHAPE",
        "DEQUANTIZE",
        "FULLY_CONNECTED",
    ]
    assert tensors["conv.weight_fp16"] == np.float16 and tensors["fc.weight_fp16"] == np.float16


def test_dynamic_runs_hybrid_kernels_at_a_quarter_of_the_size(
    convnet: onnx.ModelProto, make_images: MakeImages
) -> None:
    x = make_images(200, hw=HW, seed=7)
    want = _float(convnet, x)
    data = float_onnx_to_tflite(convnet, "dynamic")
    got = _run(data, x)
    # int8 weights (per channel) and inputs quantized on the fly by the hybrid kernels: a few
    # percent of the largest output, top-1 kept
    assert np.abs(got - want).max() <= 5e-2 * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    ratio = len(data) / len(float_onnx_to_tflite(convnet, "float32"))
    assert 0.2 <= ratio <= 0.35, ratio
    ops, tensors = _ops_and_weights(data)
    assert ops == ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]  # no DEQUANTIZE
    # the conv's 144 weights stay float32 (under 1,024, as TensorFlow's converter leaves them)
    assert tensors["conv.weight_tfl"] == np.float32 and tensors["fc.weight_tfl"] == np.int8
    assert tensors["image"] == np.float32


def test_save_writes_each_variant(
    convnet: onnx.ModelProto, make_images: MakeImages, tmp_path: Path
) -> None:
    x = make_images(20, hw=HW, seed=3)
    want = _float(convnet, x)
    for mode in ("fp16", "dynamic"):
        path = quanta.quantize(convnet, mode=mode).save(tmp_path / f"{mode}.tflite")
        got = _run(path.read_bytes(), x)
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95, mode


def test_cli_writes_fp16_tflite(convnet: onnx.ModelProto, tmp_path: Path) -> None:
    src, out = tmp_path / "m.onnx", tmp_path / "m_fp16.tflite"
    onnx.save_model(convnet, src)
    assert main(["quantize", str(src), "-o", str(out), "--mode", "fp16"]) == 0
    assert out.read_bytes() == float_onnx_to_tflite(convnet, "fp16")


def _lenet_like() -> onnx.ModelProto:
    """Conv-Relu-MaxPool x2 (pad 1) -> Reshape -> MatMul + Add -> Relu -> Gemm -> Softmax."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.5, (6, 1, 3, 3)), "b1": rng.normal(0, 0.1, 6),
        "w2": rng.normal(0, 0.3, (8, 6, 3, 3)), "b2": rng.normal(0, 0.1, 8),
        "shape": np.array([-1, 8 * 4 * 4]),
        "w3": rng.normal(0, 0.1, (128, 32)), "b3": rng.normal(0, 0.1, 32),
        "w4": rng.normal(0, 0.3, (10, 32)), "b4": rng.normal(0, 0.1, 10),
    }  # fmt: skip
    n = helper.make_node
    nodes = [
        n("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r2"], name="relu2"),
        n("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        n("Reshape", ["p2", "shape"], ["flat"], name="flatten"),
        n("MatMul", ["flat", "w3"], ["m3"], name="fc1"),
        n("Add", ["m3", "b3"], ["a3"], name="fc1_bias"),
        n("Relu", ["a3"], ["r3"], name="relu3"),
        n("Gemm", ["r3", "w4", "b4"], ["g4"], name="fc2", transB=1),
        n("Softmax", ["g4"], ["probs"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "lenet_like",
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", 1, HW, HW])],
        [helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v.astype(np.int64 if k == "shape" else np.float32), k)
         for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize(
    ("weights", "tolerance"), [("float32", 1e-5), ("fp16", 1e-2), ("dynamic", 5e-2)]
)
def test_lenet_like_variants(weights: str, tolerance: float, make_images: MakeImages) -> None:
    model = _lenet_like()
    x = make_images(100, hw=HW, seed=5)
    want = _float(model, x)
    got = _run(float_onnx_to_tflite(model, weights), x)
    assert np.abs(got - want).max() <= tolerance  # probabilities: absolute
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
