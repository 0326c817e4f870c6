"""A float ``.tflite`` in, the three TFLite variants out (``quanta quantize m.tflite -o x.tflite``):
NHWC throughout with no TRANSPOSE, the model's own input layout, checked in LiteRT against the
float file in LiteRT, and the static file against quanta's int8 ONNX model in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tflite
from tflite_builders import B, Builder, i32

from quanta.cli import main
from quanta.runtime import make_session
from quanta.runtime.litert import tflite_operators as _operators
from quanta.tflite.writer import options

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)

A = tflite.ActivationFunctionType
SAME = tflite.Padding.SAME


def _blaze_net() -> bytes:
    """NHWC conv+ReLU -> depthwise -> residual ADD+ReLU -> channel PAD -> max pool -> PRELU ->
    MEAN -> fully connected: the shape of BlazeFace-like float .tflite models."""
    b = Builder([1, 8, 8, 3], seed=3)
    conv = options("Conv2DOptions", Padding=SAME, StrideW=1, StrideH=1,
                   FusedActivationFunction=A.RELU)  # fmt: skip
    c = b.op(B.CONV_2D, [b.x, b.weight(6, 3, 3, 3), b.weight(6)], [1, 8, 8, 6], conv)
    dw = options("DepthwiseConv2DOptions", Padding=SAME, StrideW=1, StrideH=1, DepthMultiplier=1)
    d = b.op(B.DEPTHWISE_CONV_2D, [c, b.weight(1, 3, 3, 6), b.weight(6)], [1, 8, 8, 6], dw)
    s = b.op(B.ADD, [d, c], [1, 8, 8, 6], options("AddOptions", FusedActivationFunction=A.RELU))
    p = b.op(B.PAD, [s, b.const(i32(0, 0, 0, 0, 0, 0, 0, 2).reshape(4, 2))], [1, 8, 8, 8])
    pool = options("Pool2DOptions", Padding=tflite.Padding.VALID, StrideW=2, StrideH=2,
                   FilterWidth=2, FilterHeight=2)  # fmt: skip
    m = b.op(B.MAX_POOL_2D, [p], [1, 4, 4, 8], pool)
    r = b.op(B.PRELU, [m, b.const(np.full((1, 1, 8), 0.2, np.float32))], [1, 4, 4, 8])
    g = b.op(B.MEAN, [r, b.const(i32(1, 2))], [1, 8], options("ReducerOptions", KeepDims=False))
    y = b.op(B.FULLY_CONNECTED, [g, b.weight(4, 8), b.weight(4)], [1, 4],
             options("FullyConnectedOptions"))  # fmt: skip
    return b.finish(y)


def _litert(data: bytes, x: np.ndarray) -> tuple[np.ndarray, dict]:  # type: ignore[type-arg]
    """The output of ``data`` on each sample of ``x`` (batch 1), and its input's details."""
    it = litert.Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    outs = []
    for sample in x:
        feed = sample[None]
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            feed = np.clip(np.rint(feed / scale) + zp, info.min, info.max).astype(d["dtype"])
        it.set_tensor(d["index"], feed)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    return np.concatenate(outs), d


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("t2t")
    (tmp / "m.tflite").write_bytes(_blaze_net())
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 3)).astype(np.float32)  # NHWC
    np.savez(tmp / "calib.npz", x=x)
    paths = {"float": tmp / "m.tflite", "calib": tmp / "calib.npz"}
    for mode in ("static", "fp16", "dynamic"):
        for suffix in ("tflite", "onnx") if mode == "static" else ("tflite",):
            out = tmp / f"m_{mode}.{suffix}"
            argv = ["quantize", str(tmp / "m.tflite"), "-o", str(out), "--mode", mode]
            if mode == "static":
                argv += ["--calibration", str(tmp / "calib.npz"), "--no-latency-check"]
            assert main(argv) == 0
            paths[f"{mode}.{suffix}"] = out
    return paths


@pytest.mark.parametrize("mode", ["static", "fp16", "dynamic"])
def test_nhwc_throughout_in_the_model_own_layout(variants: dict[str, Path], mode: str) -> None:
    data = variants[f"{mode}.tflite"].read_bytes()
    ops = _operators(data)
    # NOTE: the import wraps each Conv, the pool and the MEAN in Transposes; none is written
    assert "TRANSPOSE" not in ops, ops
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "PAD", "MEAN"} <= set(ops), ops
    x = np.zeros((1, 8, 8, 3), np.float32)
    _, detail = _litert(data, x)
    assert list(detail["shape"]) == [1, 8, 8, 3]  # NHWC, as the float .tflite takes it
    if mode == "static":
        # int8 from the first QUANTIZE to the last DEQUANTIZE; the layers quanta keeps float in
        # ONNX (here the Add, Pad and PRelu) are float between a DEQUANTIZE and a QUANTIZE
        assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE", ops


@pytest.mark.parametrize(
    # (mode, bound on max |variant - float| / max |float| in LiteRT): measured 5.3e-4 (fp16:
    # float16 weights), 8.6e-3 (dynamic: int8 weights, inputs quantized on the fly), 5.1e-2
    # (static: activations int8); top-1 agreed on all 16
    ("mode", "bound"),
    [("fp16", 2e-3), ("dynamic", 5e-2), ("static", 8e-2)],
)
def test_variant_close_to_float_in_litert(
    variants: dict[str, Path], mode: str, bound: float
) -> None:
    x = np.random.default_rng(1).uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    want, _ = _litert(variants["float"].read_bytes(), x)
    got, _ = _litert(variants[f"{mode}.tflite"].read_bytes(), x)
    assert got.shape == want.shape == (16, 4)
    assert np.abs(got - want).max() <= bound * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9


def test_static_tflite_matches_int8_onnx_within_one_output_step(
    variants: dict[str, Path],
) -> None:
    data = variants["static.tflite"].read_bytes()
    x = np.random.default_rng(2).uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    got, _ = _litert(data, x)
    session = make_session(variants["static.onnx"])  # batch 1, as the .tflite file
    want = np.concatenate([session.run(None, {"x": sample[None]})[0] for sample in x])
    it = litert.Interpreter(model_content=data)
    out = it.get_output_details()[0]["index"]
    # the output's int8 grid: the tensor its final DEQUANTIZE reads
    step = next(
        d["quantization"][0]
        for d in it.get_tensor_details()
        if d["dtype"] == np.int8 and _feeds(it, d["index"], out)
    )
    # NOTE: quanta's ONNX model writes the logits float (its Gemm reads int8, computes float);
    # TFLite holds them on an int8 grid: half a step of rounding, and LiteRT's fixed-point
    # requantization against ONNX Runtime's float may add one more rounding. Measured: at most
    # 0.50 of a step, mean 0.24; bound: one step
    assert np.abs(got - want).max() <= step * 1.01, (np.abs(got - want).max(), step)


def _feeds(it: object, index: int, output: int) -> bool:
    """Whether tensor ``index`` is the input of the operator writing ``output``."""
    ops = it._get_ops_details()  # type: ignore[attr-defined]
    return any(int(output) in op["outputs"] and index in op["inputs"] for op in ops)


def test_input_uint8_is_the_int8_grid_shifted_by_128(
    variants: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m_u8.tflite"
    argv = ["quantize", str(variants["float"]), "-o", str(out), "--calibration",
            str(variants["calib"]), "--no-latency-check", "--input-uint8"]  # fmt: skip
    assert main(argv) == 0
    x = np.random.default_rng(3).uniform(0, 1, (8, 8, 8, 3)).astype(np.float32)
    int8_out, int8_in = _litert(variants["static.tflite"].read_bytes(), x)
    uint8_out, uint8_in = _litert(out.read_bytes(), x)  # fed rint(x / s) + z + 128
    assert int8_in["dtype"] == np.float32 and uint8_in["dtype"] == np.uint8
    ops = _operators(out.read_bytes())
    assert ops[0] == "QUANTIZE" and "TRANSPOSE" not in ops
    it = litert.Interpreter(model_content=variants["static.tflite"].read_bytes())
    quantize_out = next(  # the int8 grid the float input's QUANTIZE writes
        d
        for d in it.get_tensor_details()
        if d["dtype"] == np.int8 and list(d["shape"]) == [1, 8, 8, 3]
    )
    scale, zero_point = quantize_out["quantization"]
    assert uint8_in["quantization"] == (scale, zero_point + 128)
    # NOTE: the same int8 values reach the first Conv (u - 128 == the QUANTIZE of x), so the two
    # files compute bit for bit the same outputs
    np.testing.assert_array_equal(uint8_out, int8_out)


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--mode", "fp16"], "--input-uint8 is only used with --mode static"),
        (["--calibration", "CALIB", "-o", "OUT.onnx"], "-o OUT.tflite"),
    ],
)
def test_input_uint8_elsewhere_is_one_line(
    variants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    argv: list[str], why: str,
) -> None:  # fmt: skip
    out = tmp_path / "m.tflite"
    argv = [a.replace("CALIB", str(variants["calib"])) for a in argv]
    argv = [str(tmp_path / a) if a.startswith("OUT") else a for a in argv]
    code = main(["quantize", str(variants["float"]), "-o", str(out), *argv, "--input-uint8"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and why in lines[0], lines
    assert not list(tmp_path.iterdir())


def _quantized_tflite() -> bytes:
    from quanta.tflite.writer import OpSpec, TensorSpec

    b = Builder([1, 4, 4, 3])
    q = b.model.add(TensorSpec("q", [1, 4, 4, 3], np.dtype(np.int8), scale=[0.1], zero_point=[0]))
    b.model.ops.append(OpSpec(B.QUANTIZE, [b.x], [q]))
    return b.finish(q)


def _unknown_op_tflite() -> bytes:
    b = Builder([1, 4, 4, 3])
    return b.finish(b.op(B.L2_NORMALIZATION, [b.x], [1, 4, 4, 3]))


@pytest.mark.parametrize(
    ("source", "calibration", "fragments"),
    [
        (_quantized_tflite, (4, 4, 4, 3), ["already quantized", "pass the float model"]),
        (_unknown_op_tflite, (4, 4, 4, 3), ["L2_NORMALIZATION (operator 0)", "no ONNX import"]),
        # the model takes NHWC; the data was prepared for an NCHW (PyTorch-style) model
        (_blaze_net, (4, 3, 8, 8), ["takes NHWC (1, 8, 8, 3)", "(N, 3, 8, 8), NCHW? transpose "
                                    "it to NHWC: array.transpose(0, 2, 3, 1)"]),
    ],
)  # fmt: skip
def test_bad_tflite_input_is_one_line_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: object,
    calibration: tuple[int, ...],
    fragments: list[str],
) -> None:
    model = tmp_path / "m.tflite"
    data = source()  # type: ignore[operator]
    model.write_bytes(data)
    np.savez(tmp_path / "calib.npz", x=np.zeros(calibration, np.float32))
    out = tmp_path / "m_int8.tflite"
    argv = ["quantize", str(model), "-o", str(out), "--calibration", str(tmp_path / "calib.npz")]
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("quanta: error:") and all(f in lines[0] for f in fragments), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "m.tflite"]
    assert model.read_bytes() == data  # the input is untouched


def test_bench_feeds_nhwc_data_to_an_nhwc_tflite_as_it_is(variants: dict[str, Path]) -> None:
    """``quanta bench``'s LiteRT session takes the data in the file's own NHWC layout (a float
    .tflite and what quanta writes from it) without transposing it as NCHW data; oracle: LiteRT
    run directly, and the imported ONNX model in ONNX Runtime on the same NHWC arrays."""
    from quanta.runtime.bench import EvalSet, bench_models
    from quanta.runtime.litert import LiteRTSession
    from quanta.runtime.measure import predict_all

    x = np.random.default_rng(2).uniform(0, 1, (8, 8, 8, 3)).astype(np.float32)
    want, _ = _litert(variants["float"].read_bytes(), x)
    session = LiteRTSession(variants["float"])
    session.fit_layout({"x": x})
    assert session.get_inputs()[0].shape == ["N", 8, 8, 3]
    (name,) = [o.name for o in session.get_outputs()]
    np.testing.assert_allclose(predict_all(session, {session.get_inputs()[0].name: x})[name], want,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    data = EvalSet(inputs={"x": x}, labels=None, source="test")
    (result,) = bench_models([variants["float"]], data, batches=(1,), budget_s=0.05,
                             reference=variants["static.onnx"])  # fmt: skip
    (fid,) = result.extra["fidelity"].values()
    assert fid["cosine_mean"] > 0.99  # NHWC fed as NHWC; as NCHW data it would not even run


def _conv_avgpool_flatten_fc() -> bytes:
    """NHWC conv+ReLU6 -> 2x2 average pool -> RESHAPE (a Keras Flatten) -> fully connected: the
    tail of a Keras convnet. quanta's QDQ model gives the pool's output its own grid."""
    b = Builder([1, 8, 8, 3], seed=5)
    conv = options("Conv2DOptions", Padding=SAME, StrideW=1, StrideH=1,
                   FusedActivationFunction=A.RELU6)  # fmt: skip
    c = b.op(B.CONV_2D, [b.x, b.weight(6, 3, 3, 3), b.weight(6)], [1, 8, 8, 6], conv)
    pool = options("Pool2DOptions", Padding=tflite.Padding.VALID, StrideW=2, StrideH=2,
                   FilterWidth=2, FilterHeight=2)  # fmt: skip
    p = b.op(B.AVERAGE_POOL_2D, [c], [1, 4, 4, 6], pool)
    f = b.op(B.RESHAPE, [p, b.const(i32(-1, 96))], [1, 96])
    y = b.op(B.FULLY_CONNECTED, [f, b.weight(4, 96), b.weight(4)], [1, 4],
             options("FullyConnectedOptions"))  # fmt: skip
    return b.finish(y)


def _pooled_int8_onnx(path: Path, x: np.ndarray) -> tuple[str, np.ndarray]:
    """(name, values) of the int8 QuantizeLinear output after the AveragePool of quanta's ONNX
    model at ``path``, in ONNX Runtime, one sample a call (NCHW, as the ONNX model holds it)."""
    from quanta.graph.compact import expand_qdq

    model = expand_qdq(onnx.load(path))
    (pool,) = [n for n in model.graph.node if n.op_type == "AveragePool"]
    (q,) = [
        n
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] == pool.output[0]
    ]
    del model.graph.output[:]
    model.graph.output.append(onnx.ValueInfoProto(name=q.output[0]))
    session = make_session(model.SerializeToString())
    return q.output[0], np.concatenate([session.run(None, {"x": s[None]})[0] for s in x])


@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`")
def test_average_pool_onto_another_grid_matches_int8_onnx(tmp_path: Path) -> None:
    """TFLite's int8 AVERAGE_POOL_2D does not rescale (it writes the mean of its input's int8
    values), so an output grid other than its input's needs a QUANTIZE after it; oracle: quanta's
    int8 ONNX model in ONNX Runtime, whose QLinearAveragePool rescales."""
    (tmp_path / "m.tflite").write_bytes(_conv_avgpool_flatten_fc())
    x = np.random.default_rng(6).uniform(0, 1, (80, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x[:64])
    for suffix in ("tflite", "onnx"):
        argv = ["quantize", str(tmp_path / "m.tflite"), "-o", str(tmp_path / f"q.{suffix}"),
                "--calibration", str(tmp_path / "calib.npz"), "--no-latency-check"]  # fmt: skip
        assert main(argv) == 0
    data = (tmp_path / "q.tflite").read_bytes()
    ops = _operators(data)
    # the pattern under test: the pool's output is moved onto its own grid by a QUANTIZE
    assert ops[ops.index("AVERAGE_POOL_2D") + 1] == "QUANTIZE", ops
    name, want_pooled = _pooled_int8_onnx(tmp_path / "q.onnx", x[64:])
    it = litert.Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    tensors = {d["name"]: d["index"] for d in it.get_tensor_details()}
    (inp,), (outp,) = it.get_input_details(), it.get_output_details()
    got_pooled, got = [], []
    for sample in x[64:]:
        it.set_tensor(inp["index"], sample[None])
        it.invoke()
        got_pooled.append(it.get_tensor(tensors[name]).transpose(0, 3, 1, 2))  # NHWC -> NCHW
        got.append(it.get_tensor(outp["index"]).copy())
    # NOTE: the pool rounds twice here (its mean on the input's grid, then the QUANTIZE), ONNX
    # Runtime once: one int8 step at most. Measured: 1; with the pool written onto the output's
    # grid directly (no QUANTIZE), 101
    steps = np.abs(np.concatenate(got_pooled).astype(int) - want_pooled.astype(int))
    assert steps.max() <= 1, steps.max()
    session = make_session(tmp_path / "q.onnx")
    want = np.concatenate([session.run(None, {"x": s[None]})[0] for s in x[64:]])
    step = next(
        d["quantization"][0]
        for d in it.get_tensor_details()
        if d["dtype"] == np.int8 and _feeds(it, d["index"], outp["index"])
    )
    # NOTE: half a step of rounding of the float logits onto TFLite's grid, as in the test above,
    # and the fully connected layer sums 96 pooled values, each one step off at most. Measured:
    # at most 1.57 steps; without the QUANTIZE, 45.6. Bound: two steps
    assert np.abs(np.concatenate(got) - want).max() <= 2 * step
