"""TFLite export: LiteRT loads the file and computes what the int8 ONNX model computes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from quanta.cli import main
from quanta.errors import ModelError
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.result import FloatKind, FloatReason
from quanta.graph.uint8_input import with_uint8_input
from quanta.runtime import count_kernels, make_session
from quanta.tflite import onnx_to_tflite
from quanta.tflite.ranges import recorded_ranges

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]
CONFIG = QuantizeConfig(min_fidelity=None, method="minmax", activation_type="int8")


def _run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = litert.Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    ys = []
    for i in range(len(x)):
        sample = x[i : i + 1].transpose(0, 2, 3, 1) if x.ndim == 4 else x[i : i + 1]
        interpreter.set_tensor(inp["index"], sample.astype(inp["dtype"]))
        interpreter.invoke()
        ys.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(ys)


def _onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {model.graph.input[0].name: x})[0]


def _steps(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Differences in steps of the int8 grid TFLite holds the output on."""
    return np.abs(a - b) / ((hi - lo) / 255)


def test_convnet_matches_onnx(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    model = quantize_static(
        make_convnet(channels=8), CalibrationData({"image": make_images(64)}), CONFIG
    ).model
    ref_calib = _onnx(model, make_images(64))
    lo, hi = float(ref_calib.min()), float(ref_calib.max())
    data = onnx_to_tflite(model, {"logits": (lo, hi)})
    x = make_images(50, seed=7)
    got, want = _run_tflite(data, x), _onnx(model, x)
    assert got.shape == want.shape
    steps = _steps(got, want, lo, hi)
    assert np.mean(steps <= 0.5 + 1e-6) >= 0.99  # equal on the output grid
    assert steps.max() <= 1.5
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.98


def test_uint8_input(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    model = quantize_static(
        make_convnet(), CalibrationData({"image": make_images(64)}), CONFIG
    ).model
    ref = _onnx(model, make_images(64))
    data = onnx_to_tflite(with_uint8_input(model), {"logits": (float(ref.min()), float(ref.max()))})
    x = make_images(20, seed=3)
    pixels = np.rint(x * 255).astype(np.uint8)
    got = _run_tflite(data, pixels)
    want = _onnx(model, pixels.astype(np.float32) / 255)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def _float_model(
    nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], x_shape: list, y_shape: list
) -> onnx.ModelProto:
    """An opset-20 float model from ``nodes`` reading ``x`` and writing ``y``."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


def _mobile_block(e: int = 12) -> onnx.ModelProto:
    """Pointwise conv -> depthwise 3x3 (pad 1) -> pointwise, a residual Add, global average pool:
    MobileNetV2's ops in miniature."""
    rng = np.random.default_rng(0)
    c = 4
    inits = {
        "w1": rng.normal(0, 0.4, (e, c, 1, 1)), "b1": rng.normal(0, 0.1, e),
        "w2": rng.normal(0, 0.4, (e, 1, 3, 3)), "b2": rng.normal(0, 0.1, e),
        "w3": rng.normal(0, 0.3, (c, e, 1, 1)), "b3": rng.normal(0, 0.1, c),
        "wf": rng.normal(0, 0.5, (5, c)), "bf": rng.normal(0, 0.1, 5),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="expand"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["h2"], name="dw", group=e, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["h3"], name="project"),
        helper.make_node("Add", ["x", "h3"], ["sum"], name="residual"),
        helper.make_node("GlobalAveragePool", ["sum"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return _float_model(nodes, inits, ["N", c, 8, 8], ["N", 5])


def test_depthwise_pad_add_and_mean() -> None:
    x = np.random.default_rng(1).normal(0, 1, (80, 4, 8, 8)).astype(np.float32)
    model = quantize_static(_mobile_block(), CalibrationData({"x": x[:64]}), CONFIG).model
    ref = _onnx(model, x[:64])
    lo, hi = float(ref.min()), float(ref.max())
    data = onnx_to_tflite(model, {"y": (lo, hi)})
    got, want = _run_tflite(data, x[64:]), _onnx(model, x[64:])
    assert got.shape == want.shape == (16, 5)
    steps = _steps(got, want, lo, hi)
    assert np.mean(steps <= 0.5 + 1e-6) >= 0.9 and steps.max() <= 1.5


def test_float_output_needs_a_range(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    model = quantize_static(
        make_convnet(), CalibrationData({"image": make_images(32)}), CONFIG
    ).model
    with pytest.raises(ModelError, match="--calibration"):
        onnx_to_tflite(model)


def test_unsupported_op_is_named(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    model = quantize_static(
        make_convnet(head="Elu"), CalibrationData({"image": make_images(32)}), CONFIG
    ).model
    # (a Tanh head exports now: the int8 Gemm before it, whose float logits only float layers
    # read, is written float, and TANH after it)
    with pytest.raises(ModelError, match=r"'head' \(Elu\)"):
        onnx_to_tflite(model, {"logits": (0.0, 1.0)})


def test_cli_export(make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    model = quantize_static(
        make_convnet(), CalibrationData({"image": make_images(32)}), CONFIG
    ).model
    src, calib, out = tmp_path / "q.onnx", tmp_path / "c.npz", tmp_path / "q.tflite"
    onnx.save_model(model, src)
    np.savez(calib, image=make_images(16))
    assert main(["export-tflite", str(src), "-o", str(out), "--calibration", str(calib)]) == 0
    assert out.read_bytes()[4:8] == b"TFL3"
    assert main(["export-tflite", str(src), "-o", str(tmp_path / "x.tflite")]) == 2
    err = capsys.readouterr().err
    assert "--calibration" in err and not (tmp_path / "x.tflite").exists()


def test_bench_runs_tflite_beside_onnx(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from quanta.runtime import EvalSet, bench_models

    model = quantize_static(
        make_convnet(), CalibrationData({"image": make_images(64)}), CONFIG
    ).model
    ref = _onnx(model, make_images(64))
    onnx_path, tfl_path = tmp_path / "q.onnx", tmp_path / "q.tflite"
    onnx.save_model(model, onnx_path)
    tfl_path.write_bytes(onnx_to_tflite(model, {"logits": (float(ref.min()), float(ref.max()))}))
    x = make_images(40, seed=2)
    labels = _onnx(model, x).argmax(1)
    results = bench_models([onnx_path, tfl_path], EvalSet({"image": x}, labels, "test"),
                           batches=(1, 8), budget_s=0.05)  # fmt: skip
    onnx_r, tfl_r = results
    assert onnx_r.accuracy == 1.0 and tfl_r.accuracy is not None and tfl_r.accuracy >= 0.95
    assert tfl_r.kernels.int8["CONV_2D"] == 1 and tfl_r.kernels.int8["FULLY_CONNECTED"] == 1
    assert set(tfl_r.latency) == {1, 8}
    code = main(["bench", str(onnx_path), "--runtime", "litert", "--data", "mnist"])
    assert code == 2 and "not a .tflite file" in capsys.readouterr().err


def test_layers_kept_float_are_written_float_with_int8_weights() -> None:
    from quanta.runtime.litert import tflite_kernels

    x = np.random.default_rng(1).normal(0, 1, (80, 4, 8, 8)).astype(np.float32)
    # 128 x 3 x 3 depthwise weights: enough (>= 1,024) for quanta to store them in int8
    result = quantize_static(
        _mobile_block(e=128), CalibrationData({"x": x[:64]}), CONFIG,
        keep_float={"dw": FloatReason("test: kept float for speed", FloatKind.SPEED)},
    )  # fmt: skip
    model = result.model
    assert any(f.name == "dw" for f in result.float_nodes)
    ref = _onnx(model, x[:64])
    lo, hi = float(ref.min()), float(ref.max())
    data = onnx_to_tflite(model, {"y": (lo, hi)})
    path = Path(__import__("tempfile").mkdtemp()) / "m.tflite"
    path.write_bytes(data)
    ops = tflite_kernels(path).all
    # the float depthwise conv: its input dequantized, its int8-stored weights dequantized once,
    # its output quantized again
    assert ops["DEPTHWISE_CONV_2D"] == 1 and ops["DEQUANTIZE"] >= 3 and ops["QUANTIZE"] >= 2
    # its weight (kept float for speed, not answers), stored int8 with float16 scales
    # (graph/half_scales.py), stays int8 in the
    # .tflite, with those scales widened to float32 exactly
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    dw = next(n for n in model.graph.node if n.name == "dw")
    mul = producer[dw.input[1]]
    s16 = inits[producer[mul.input[1]].input[0]]
    assert s16.dtype == np.float16 and s16.size == 128
    interpreter = litert.Interpreter(model_content=data)
    int8_weights = [
        t for t in interpreter.get_tensor_details()
        if t["dtype"] == np.int8 and list(t["shape"]) == [1, 3, 3, 128]
    ]  # fmt: skip
    assert len(int8_weights) == 1
    got = int8_weights[0]["quantization_parameters"]["scales"]
    np.testing.assert_array_equal(got, s16.astype(np.float32).reshape(-1))
    # against ONNX's own semantics: ONNX Runtime's graph optimizations rewrite the QDQ nodes
    # around a float op (measured: 0.6 % off the graph's arithmetic here; with optimizations
    # off it agrees), while TFLite and onnx.reference compute the graph as written
    from onnx.reference import ReferenceEvaluator

    got = _run_tflite(data, x[64:])
    want = ReferenceEvaluator(model).run(None, {"x": x[64:]})[0]
    steps = _steps(got, want, lo, hi)
    assert np.mean(steps <= 0.5 + 1e-6) >= 0.95 and steps.max() <= 1.5


def _ranges(
    model: onnx.ModelProto, names: list[str], x: np.ndarray
) -> dict[str, tuple[float, float]]:
    from quanta.runtime.session import session_with_outputs

    values = session_with_outputs(model, names).run(names, {model.graph.input[0].name: x})
    return {n: (float(v.min()), float(v.max())) for n, v in zip(names, values, strict=True)}


@pytest.mark.parametrize(("head", "kernel"), [("Softmax", "SOFTMAX"), ("Sigmoid", "LOGISTIC")])
def test_probabilities_run_int8_on_tflites_fixed_grid(
    make_convnet: MakeConvnet, make_images: MakeImages, head: str, kernel: str
) -> None:
    from quanta.runtime.litert import tflite_kernels

    model = quantize_static(
        make_convnet(head=head), CalibrationData({"image": make_images(64)}), CONFIG
    ).model
    assert any(n.op_type == head for n in model.graph.node)  # kept float in ONNX
    with pytest.raises(ModelError, match=f"{head} input 'fc_out'.*--calibration"):
        onnx_to_tflite(model, {"logits": (0.0, 1.0)})
    data = onnx_to_tflite(model, _ranges(model, ["fc_out", "logits"], make_images(64)))
    path = Path(__import__("tempfile").mkdtemp()) / "m.tflite"
    path.write_bytes(data)
    assert tflite_kernels(path).int8[kernel] == 1
    x = make_images(40, seed=9)
    got, want = _run_tflite(data, x), _onnx(model, x)
    # probabilities on the (1/256, -128) grid, from logits on their own int8 grid: within a
    # few output steps of ONNX Runtime's float result on the int8 logits
    assert np.abs(got - want).max() <= 4 / 256
    if head == "Softmax":
        np.testing.assert_allclose(got.sum(1), 1.0, atol=0.05)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def _two_branch_concat() -> onnx.ModelProto:
    """Two convolutions of different output ranges concatenated on channels -> GAP -> Gemm."""
    rng = np.random.default_rng(2)
    inits = {
        "wa": rng.normal(0, 0.5, (3, 2, 3, 3)), "ba": rng.normal(0, 0.1, 3),
        "wb": rng.normal(0, 1.5, (5, 2, 1, 1)), "bb": rng.normal(0, 0.1, 5),
        "wf": rng.normal(0, 0.5, (4, 8)), "bf": rng.normal(0, 0.1, 4),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["x", "wb", "bb"], ["b"], name="conv_b"),
        helper.make_node("Relu", ["b"], ["rb"], name="relu_b"),
        helper.make_node("Concat", ["ra", "rb"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return _float_model(nodes, inits, ["N", 2, 6, 6], ["N", 4])


def test_concat_of_inputs_on_other_grids() -> None:
    from quanta.runtime.litert import tflite_kernels

    x = np.random.default_rng(3).normal(0, 1, (80, 2, 6, 6)).astype(np.float32)
    model = quantize_static(_two_branch_concat(), CalibrationData({"x": x[:64]}), CONFIG).model
    cat = next(n for n in model.graph.node if n.op_type == "Concat")
    producers = {o: n for n in model.graph.node for o in n.output}
    assert all(producers[i].op_type == "DequantizeLinear" for i in cat.input)  # int8 Concat
    scales = {i: producers[i].input[1] for i in cat.input}
    assert len(set(scales.values())) == 2  # each input on its own grid
    ranges = _ranges(model, ["y"], x[:64])
    data = onnx_to_tflite(model, ranges)
    path = Path(__import__("tempfile").mkdtemp()) / "m.tflite"
    path.write_bytes(data)
    kernels = tflite_kernels(path)
    assert kernels.int8["CONCATENATION"] == 1
    assert kernels.all["QUANTIZE"] >= 2  # model input + at least one input requantized
    lo, hi = ranges["y"]
    got, want = _run_tflite(data, x[64:]), _onnx(model, x[64:])
    steps = _steps(got, want, lo, hi)
    assert np.mean(steps <= 0.5 + 1e-6) >= 0.9 and steps.max() <= 1.5


def test_cli_measures_the_softmax_input_range(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    model = quantize_static(
        make_convnet(head="Softmax"), CalibrationData({"image": make_images(64)}), CONFIG
    ).model
    src, calib, out = tmp_path / "q.onnx", tmp_path / "c.npz", tmp_path / "q.tflite"
    onnx.save_model(model, src)
    np.savez(calib, image=make_images(64))  # the ranges of the calibration above
    assert main(["export-tflite", str(src), "-o", str(tmp_path / "x.tflite")]) == 2
    assert "Softmax input 'fc_out'" in capsys.readouterr().err
    assert main(["export-tflite", str(src), "-o", str(out), "--calibration", str(calib)]) == 0
    x = make_images(20, seed=4)
    got, want = _run_tflite(out.read_bytes(), x), _onnx(model, x)
    assert np.abs(got - want).max() <= 4 / 256


def test_quantized_probabilities_are_requantized_from_the_fixed_grid(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    """A QDQ model that quantizes the Softmax output itself (uint8, 1/255): TFLite's SOFTMAX
    writes its fixed grid and a QUANTIZE moves it onto the model's."""
    model = quantize_static(
        make_convnet(head="Softmax"), CalibrationData({"image": make_images(64)}), CONFIG
    ).model
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    softmax.output[0] = "probs"
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(1 / 255, np.float32), "p_s"),
        numpy_helper.from_array(np.array(0, np.uint8), "p_zp"),
    ])  # fmt: skip
    model.graph.node.extend([
        helper.make_node("QuantizeLinear", ["probs", "p_s", "p_zp"], ["probs_q"], name="p_q"),
        helper.make_node("DequantizeLinear", ["probs_q", "p_s", "p_zp"], ["logits"], name="p_dq"),
    ])  # fmt: skip
    data = onnx_to_tflite(model, _ranges(model, ["fc_out"], make_images(64)))
    x = make_images(30, seed=6)
    got, want = _run_tflite(data, x), _onnx(model, x)
    assert np.abs(got - want).max() <= 4 / 256 + 1 / 255
    on_grid = np.abs(got * 255 - np.rint(got * 255))
    assert on_grid.max() <= 1e-4  # the model's own (1/255, 0) grid, not 1/256


def _conv_leaky_conv() -> onnx.ModelProto:
    """Conv -> LeakyRelu(0.1) -> Conv -> GlobalAveragePool -> Flatten: a YOLO-style activation."""
    rng = np.random.default_rng(2)
    inits = {
        "w1": rng.normal(0, 0.4, (6, 3, 3, 3)), "b1": rng.normal(0, 0.1, 6),
        "w2": rng.normal(0, 0.3, (4, 6, 3, 3)), "b2": rng.normal(0, 0.1, 4),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["h1"], ["a1"], name="leaky", alpha=0.1),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["h2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["h2"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["y"], name="flatten"),
    ]
    return _float_model(nodes, inits, ["N", 3, 8, 8], ["N", 4])


def test_leaky_relu_runs_int8_in_both_runtimes(tmp_path: Path) -> None:
    x = np.random.default_rng(3).normal(0, 1, (80, 3, 8, 8)).astype(np.float32)
    float_model = _conv_leaky_conv()
    model = quantize_static(float_model, CalibrationData({"x": x[:64]}), CONFIG).model
    onnx.save(model, tmp_path / "q.onnx")
    assert count_kernels(tmp_path / "q.onnx").int8["QLinearLeakyRelu"] == 1  # ORT fused it
    want, ref_float = _onnx(model, x[64:]), _onnx(float_model, x[64:])
    assert np.abs(want - ref_float).max() <= 0.05 * np.abs(ref_float).max()
    calib = _onnx(model, x[:64])
    lo, hi = float(calib.min()), float(calib.max())
    data = onnx_to_tflite(model, {"y": (lo, hi)})
    got = _run_tflite(data, x[64:])
    steps = _steps(got, want, lo, hi)
    # ONNX Runtime's QLinearLeakyRelu looks its output up in a table computed in float, TFLite
    # requantizes each side with a fixed-point multiplier: their LeakyRelu outputs differ by one
    # step on some values, which conv2 carries on. Never more than one output step apart.
    assert np.mean(steps <= 0.5 + 1e-6) >= 0.75 and steps.max() <= 1.5


def test_a_model_quanta_quantized_exports_without_a_second_calibration(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path
) -> None:
    src, calib = tmp_path / "model.onnx", tmp_path / "c.npz"
    onnx.save_model(make_convnet(head="Softmax"), src)
    np.savez(calib, image=make_images(40))
    q = tmp_path / "q.onnx"
    assert main(["quantize", str(src), "-o", str(q), "--calibration", str(calib)]) == 0
    # the ranges TFLite needs (the output, the Softmax input) travel in the model's metadata
    recorded = recorded_ranges(onnx.load_model(q))
    assert set(recorded) == {"logits", *(n.input[0] for n in _softmax_nodes(q))}
    assert main(["export-tflite", str(q), "-o", str(tmp_path / "a.tflite")]) == 0
    # the same bytes as measuring them again on the calibration samples
    assert main(["export-tflite", str(q), "-o", str(tmp_path / "b.tflite"), "--calibration",
                 str(calib)]) == 0  # fmt: skip
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()
    got = _run_tflite((tmp_path / "a.tflite").read_bytes(), make_images(20, seed=4))
    want = _onnx(onnx.load_model(q), make_images(20, seed=4))
    assert np.abs(got - want).max() <= 4 / 256  # probabilities on TFLite's 1/256 grid


def _softmax_nodes(path: Path) -> list[onnx.NodeProto]:
    return [n for n in onnx.load_model(path).graph.node if n.op_type == "Softmax"]
