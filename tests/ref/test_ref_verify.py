"""The reference executor on whole quantized models, and ``quanta verify``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from quanta.cli import main
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.uint8_input import with_uint8_input
from quanta.ref import run_reference, verify

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def _quantized(make_convnet: MakeConvnet, make_images: MakeImages, **kw: object) -> onnx.ModelProto:
    config = QuantizeConfig(min_fidelity=None, method="minmax", **kw)  # type: ignore[arg-type]
    return quantize_static(
        make_convnet(), CalibrationData({"image": make_images(64)}), config
    ).model


def test_quantized_convnet_is_integer_only_and_agrees_with_onnx_runtime(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model = _quantized(make_convnet, make_images)
    images = make_images(128, seed=5)
    run = run_reference(model, {"image": images})
    assert run.integer_only, run.float_reasons
    assert {"Conv", "Gemm", "MaxPool"} <= set(run.integer_ops)
    report = verify(model, {"image": images}, batch_size=50)
    logits = report.outputs["logits"]
    assert logits.grid.startswith("int32 accumulator")
    assert logits.op_by_op.values == 128 * 10
    assert logits.equal_fraction >= 0.999 and logits.max_diff_steps is not None
    assert logits.max_diff_steps <= 1
    assert logits.end_to_end is not None and logits.end_to_end.cosine > 0.999
    for name, tensor in report.tensors.items():
        assert tensor.op_by_op.values > 0, name
        assert tensor.equal_fraction >= 0.999 and (tensor.max_diff_steps or 0) <= 1, name


def test_float_output_is_the_accumulator_times_its_unit(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model = _quantized(make_convnet, make_images)
    run = run_reference(model, {"image": make_images(4)})
    acc = run.integers["logits"]
    assert acc.qp.dtype == "int32" and acc.qp.axis == 1  # per output feature of the Gemm
    np.testing.assert_allclose(run.outputs["logits"], acc.q * acc.qp.scale, rtol=1e-6)


def test_op_without_integer_kernel_runs_in_float_and_is_reported(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model = _quantized(lambda: make_convnet(head="Softmax"), make_images)
    run = run_reference(model, {"image": make_images(4)})
    assert not run.integer_only
    assert run.float_ops["Softmax"] == 1
    assert any("Softmax" in why for why in run.float_reasons.values())
    probs = run.outputs["logits"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_uint8_input_model_takes_raw_pixels(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model = with_uint8_input(_quantized(make_convnet, make_images))
    pixels = np.rint(make_images(16) * 255).astype(np.uint8)
    run = run_reference(model, {"image": pixels})
    assert run.integer_only and "image" in run.int_inputs
    report = verify(model, {"image": pixels})
    assert report.outputs["logits"].equal_fraction >= 0.999


def test_missing_input_is_a_clear_error(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    from quanta.errors import DataError

    with pytest.raises(DataError, match="missing"):
        run_reference(_quantized(make_convnet, make_images), {"pixels": make_images(2)})


def test_cli_verify_writes_the_json_the_issue_names(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    model_path, data, report = tmp_path / "q.onnx", tmp_path / "x.npz", tmp_path / "v.json"
    onnx.save_model(_quantized(make_convnet, make_images), model_path)
    np.savez(data, image=make_images(40, seed=3))
    code = main(["verify", str(model_path), "--inputs", str(data), "--json", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "integer-only: yes" in captured.out
    doc = json.loads(report.read_text())
    logits = doc["outputs"]["logits"]
    assert isinstance(logits["equal_fraction"], float) and isinstance(logits["max_diff_steps"], int)
    assert logits["equal_fraction"] >= 0.999 and doc["samples"] == 40


def test_cli_verify_bad_inputs_file(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    model_path, data = tmp_path / "q.onnx", tmp_path / "x.npz"
    onnx.save_model(_quantized(make_convnet, make_images), model_path)
    np.savez(data, pixels=make_images(4), other=make_images(4))
    code = main(
        ["verify", str(model_path), "--inputs", str(data), "--json", str(tmp_path / "v.json")]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "v.json").exists()


def test_float_global_max_pool_of_a_sequence_keeps_its_channels() -> None:
    # onnx.reference's GlobalMaxPool returns (N, 1) for an (N, C, L) input; ONNX Runtime and
    # the spec give (N, C, 1). The executor computes it itself (magika's byte model has one).
    nodes = [
        onnx.helper.make_node("GlobalMaxPool", ["x"], ["m"], name="pool"),
        onnx.helper.make_node("Squeeze", ["m", "axes"], ["y"], name="squeeze"),
    ]
    graph = onnx.helper.make_graph(
        nodes, "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 6])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
        [onnx.numpy_helper.from_array(np.array([2], np.int64), "axes")],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).normal(size=(3, 4, 6)).astype(np.float32)
    run = run_reference(model, {"x": x})
    np.testing.assert_array_equal(run.outputs["y"], x.max(axis=2))
