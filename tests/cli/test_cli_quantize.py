"""``quanta quantize`` in-process: exit codes, files written (or not), one-line errors."""

from __future__ import annotations

import hashlib
import re
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
    # a quarter of the 16 samples held out for fidelity; input, conv+relu; logits stay float
    assert "calibrated on 12 samples, fidelity on 4 held out; 2 activation tensors" in err
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
    assert "calibrated on 4 samples, fidelity on 1 held out" in err  # --samples 5
    model = load_model(out_path)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    (conv,) = [n for n in model.graph.node if n.op_type == "Conv"]
    assert inits[producer[conv.input[1]].input[1]].shape == ()  # --per-tensor weight scale
    (q_image,) = [n for n in model.graph.node if list(n.input[:1]) == ["image"]]
    assert inits[q_image.input[2]].dtype == np.uint8  # --activation-type uint8


def test_latency_line_and_its_opt_out(
    run: Run, model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    argv = ("quantize", model_path, "-o", tmp_path / "int8.onnx", "--calibration", calib_path)
    code, _, err = run(*argv)  # the tests' timer: int8 twice as fast as float (conftest)
    assert code == 0, err
    assert "batch 1: 1.000 ms float, 0.500 ms int8 (2.00×)" in err
    code, _, err = run(*argv, "--no-latency-check", "--force")
    assert code == 0, err
    assert "batch 1:" not in err


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


def test_float_by_design_node_is_a_note(
    run: Run, make_convnet: MakeConvnet, calib_path: Path, tmp_path: Path
) -> None:
    model_path = tmp_path / "softmax.onnx"
    onnx.save_model(make_convnet(head="Softmax"), model_path)
    code, _, err = run(
        "quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", calib_path
    )
    assert code == 0, err
    # Softmax is float by design: a note, nothing to act on
    assert "note: node 'head' (Softmax) stays float" in err
    # (this toy model's int8 file is not smaller than float, which is warned about separately)
    assert not [x for x in err.splitlines() if x.startswith("warning:") and "float:" in x]


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
    assert "note: node 'head' (Sigmoid) stays float" in err
    assert not [x for x in err.splitlines() if x.startswith("warning:") and "float:" in x]


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
    # two arrays, neither named 'image' (one array under any key would feed the only input)
    np.savez(bad, pixels=np.zeros((4, 1, 8, 8), np.float32), mask=np.zeros((4, 1), np.float32))
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


def test_a_model_that_does_not_shrink_says_so(run: Run, tmp_path: Path) -> None:
    # a (2, 2) weight: its int8 copy saves 12 bytes, the dynamic nodes around it cost more
    w = numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "tiny",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2])],
        [w],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save_model(onnx.helper.make_model(graph), path)
    code, out, err = run("quantize", path, "-o", tmp_path / "q.onnx", "--mode", "dynamic")
    assert code == 0
    assert "not smaller than float" in out
    before, after = path.stat().st_size, (tmp_path / "q.onnx").stat().st_size
    assert after >= before
    (line,) = [line for line in err.splitlines() if "not smaller" in line]
    assert (
        f"({after / 1e6:.2f} MB) is not smaller than the float input ({before / 1e6:.2f} MB)"
        in line
    )


def abs_chain_model() -> onnx.ModelProto:
    """image (N, 1, 8, 8) -> Conv -> Relu -> Abs -> Abs -> Abs -> y: three nodes quanta has no
    int8 handler for, float for the same reason."""
    rng = np.random.default_rng(0)
    nodes = [
        onnx.helper.make_node("Conv", ["image", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3]),
        onnx.helper.make_node("Relu", ["c"], ["r"], name="relu"),
        onnx.helper.make_node("Abs", ["r"], ["a0"], name="abs_0"),
        onnx.helper.make_node("Abs", ["a0"], ["a1"], name="abs_1"),
        onnx.helper.make_node("Abs", ["a1"], ["y"], name="abs_2"),
    ]
    graph = onnx.helper.make_graph(
        nodes, "abs_chain",
        [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", 1, 8, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2, 6, 6])],
        [numpy_helper.from_array(rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(np.zeros(2, np.float32), "b")],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


def test_float_nodes_are_one_line_per_reason_and_verbose_names_each(
    run: Run, calib_path: Path, tmp_path: Path
) -> None:
    model_path = tmp_path / "abs.onnx"
    onnx.save_model(abs_chain_model(), model_path)
    args = ("quantize", model_path, "--calibration", calib_path, "--no-fallback")
    code, _, err = run(*args, "-o", tmp_path / "q.onnx")
    assert code == 0, err
    warnings = [x for x in err.splitlines() if x.startswith("warning:") and "float:" in x]
    assert warnings == [
        "warning: 3 Abs nodes stay float: quanta has no int8 handler for Abs (e.g. 'abs_0')"
    ]
    assert "--verbose names every node" in err
    code, _, err = run(*args, "-o", tmp_path / "q2.onnx", "--verbose")
    assert code == 0, err
    warnings = [x for x in err.splitlines() if x.startswith("warning:") and "float:" in x]
    assert [w.split("'")[1] for w in warnings] == ["abs_0", "abs_1", "abs_2"]


def test_missed_fidelity_target_says_not_met_and_exits_0(
    run: Run, model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        "quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", calib_path,
        "--min-fidelity", "1", "--max-float", "0",
        "--no-latency-check",  # else float compute may be kept for answers (graph/float_compute)
    )  # fmt: skip
    assert code == 0, err
    (line,) = [x for x in err.splitlines() if "not met" in x and x.startswith("warning:")]
    # a miss is printed with the digits that show it (never "1.0000" against a target of 1)
    assert re.match(r"warning: fidelity target 1 not met: 0\.9+\d ", line), line
    assert line.endswith("fully int8 (at most 0 allowed); try --mode auto or --max-float N")


def test_met_fidelity_target_is_a_note(
    run: Run, model_path: Path, calib_path: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        "quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", calib_path,
        "--min-fidelity", "0.5",
    )  # fmt: skip
    assert code == 0, err
    assert "note: fidelity target 0.5 met: " in err and "not met" not in err


def test_one_array_under_any_key_feeds_the_only_input(
    run: Run, model_path: Path, make_images: MakeImages, tmp_path: Path
) -> None:
    calib = tmp_path / "any_key.npz"
    np.savez(calib, make_images(16))  # stored as 'arr_0'
    code, _, err = run("quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", calib)
    assert code == 0, err
    assert (
        f"note: {str(calib)!r} holds one array, 'arr_0': fed to the model's only input 'image'"
        in err
    )


def test_calibration_npz_in_nhwc_for_an_nchw_model(
    run: Run, model_path: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.zeros((4, 8, 8, 1), np.float32))  # NHWC; the model takes NCHW
    code, _, err = run("quantize", model_path, "-o", tmp_path / "q.onnx", "--calibration", bad)
    assert_one_line_error(
        code, err, "takes NCHW (N, 1, 8, 8)", "(N, 8, 8, 1), NHWC? transpose it to NCHW"
    )
    assert not (tmp_path / "q.onnx").exists()
