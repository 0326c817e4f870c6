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


def _lenet_like(c2: int = 8) -> onnx.ModelProto:
    """Conv-Relu-MaxPool x2 (pad 1; ``c2`` channels in the second) -> Reshape -> MatMul + Add ->
    Relu -> Gemm -> Softmax."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.5, (6, 1, 3, 3)), "b1": rng.normal(0, 0.1, 6),
        "w2": rng.normal(0, 0.3, (c2, 6, 3, 3)), "b2": rng.normal(0, 0.1, c2),
        "shape": np.array([-1, c2 * 4 * 4]),
        "w3": rng.normal(0, 0.1, (c2 * 16, 32)), "b3": rng.normal(0, 0.1, 32),
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


def _hybrid_ops(data: bytes) -> list[tuple[str, int, bool | None, str]]:
    """(op, version, asymmetric_quantize_inputs or None, weight dtype) of each CONV_2D and
    FULLY_CONNECTED, read from the flatbuffer."""
    import tflite

    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    found = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        asym = None
        if name == "FULLY_CONNECTED":
            table, opts = op.BuiltinOptions(), tflite.FullyConnectedOptions()
            opts.Init(table.Bytes, table.Pos)
            asym = bool(opts.AsymmetricQuantizeInputs())
        weight = graph.Tensors(int(op.InputsAsNumpy()[1])).Type()
        found.append(
            (name, code.Version(), asym, "int8" if weight == tflite.TensorType.INT8 else "float32")
        )
    return found


def test_dynamic_writes_tensorflows_hybrid_options() -> None:
    # What TensorFlow 2.21's converter writes for the classic Keras LeNet with
    # optimizations=[DEFAULT]: a float CONV_2D for the 800-weight first conv, hybrid CONV_2D
    # version 5, hybrid FULLY_CONNECTED version 12 with asymmetric_quantize_inputs
    data = float_onnx_to_tflite(_lenet_like(c2=24), "dynamic")  # conv2: 24x6x3x3 = 1,296 weights
    assert _hybrid_ops(data) == [
        ("CONV_2D", 3, None, "float32"),  # 54 weights: under 1,024, float as TensorFlow's
        ("CONV_2D", 5, None, "int8"),
        ("FULLY_CONNECTED", 12, True, "int8"),  # 384 x 32
        ("FULLY_CONNECTED", 5, False, "float32"),  # 32 x 10 = 320 weights: float
    ]
    # the float32 variant keeps plain float ops
    assert {v for _, v, _, _ in _hybrid_ops(float_onnx_to_tflite(_lenet_like(c2=24)))} == {3, 5}


def _asymmetric_hybrid_fc(x: np.ndarray, q_w: np.ndarray, w_scale: np.ndarray, b: np.ndarray):
    """A hybrid FULLY_CONNECTED by hand: each row of ``x`` quantized to int8 asymmetrically over
    [min(0, x), max(0, x)] (scale = range / 255, zero point rounded from the minimum), an int32
    dot product with the int8 weights, rescaled per output channel."""
    lo, hi = np.minimum(x.min(1), 0), np.maximum(x.max(1), 0)
    scale = (hi - lo) / 255
    zero = np.clip(np.round(-128 - lo / scale), -128, 127)
    q_x = np.clip(np.round(x / scale[:, None]) + zero[:, None], -128, 127)
    acc = (q_x - zero[:, None]).astype(np.int64) @ q_w.T.astype(np.int64)  # (N, out)
    return acc * scale[:, None] * w_scale[None, :] + b[None, :]


def test_dynamic_fc_quantizes_its_input_asymmetrically() -> None:
    # one Gemm, 64 -> 32 (2,048 weights: int8), inputs after a ReLU (all >= 0), as LeNet's fc
    rng = np.random.default_rng(4)
    w, b = (
        rng.normal(0, 0.2, (32, 64)).astype(np.float32),
        rng.normal(0, 0.1, 32).astype(np.float32),
    )
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "fc",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 32])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    interpreter = _interpreter(float_onnx_to_tflite(model, "dynamic"))
    x = np.maximum(rng.normal(0, 1, (4, 64)), 0).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    w_scale = np.abs(w).max(1) / 127
    q_w = np.clip(np.round(w / w_scale[:, None]), -127, 127)
    want = _asymmetric_hybrid_fc(x.astype(np.float64), q_w, w_scale, b)
    # float32 rescaling in the kernel: within 1e-5 of the largest output
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
