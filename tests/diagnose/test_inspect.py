"""``quanta inspect``: per-layer statistics checked against hand-made cases, and the CLI files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from quanta.cli import main
from quanta.diagnose import inspect_layers
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.quant import fake_quantize

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def _quantize(model: onnx.ModelProto, images: np.ndarray) -> onnx.ModelProto:
    config = QuantizeConfig(min_fidelity=None, method="minmax")
    return quantize_static(model, CalibrationData({"image": images}), config).model


def test_layer_report_numbers(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    float_model = make_convnet()
    quantized = _quantize(float_model, make_images(64))
    images = make_images(32, seed=9)
    layers = {r.tensor: r for r in inspect_layers(quantized, float_model, {"image": images})}
    assert list(layers) == ["image", "relu_out", "pool_out", "flat"]
    image = layers["image"]
    assert image.op_type == "input" and image.producer == ""
    # SQNR of the input is that of fake-quantizing it on its grid, computed independently here
    from quanta.quant import QParams

    qp = QParams(image.scale, image.zero_point, image.dtype)
    err = images - fake_quantize(images, qp)
    expected = 10 * np.log10(
        np.sum(images.astype(np.float64) ** 2) / np.sum(err.astype(np.float64) ** 2)
    )
    assert image.sqnr_db == pytest.approx(expected, rel=1e-4)
    assert image.observed_min == pytest.approx(float(images.min()))
    assert image.grid_min == pytest.approx(image.scale * (-128 - image.zero_point))
    relu = layers["relu_out"]
    assert relu.producer == "conv" and relu.op_type == "Conv"
    assert relu.observed_min >= 0.0 and relu.sqnr_db > 20
    for r in layers.values():
        assert 0.0 <= r.clipped_fraction <= 1.0 and r.sensitivity >= 0.0


def test_clipping_and_sensitivity_show_a_bad_grid(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    float_model = make_convnet()
    quantized = _quantize(float_model, make_images(64))
    # shrink the conv output's grid 8x: most values clip, and that layer dominates the damage
    producer = {o: n for n in quantized.graph.node for o in n.output}
    q_node = producer[producer["relu_out"].input[0]]  # relu_out is its pair's DQ output
    assert q_node.op_type == "QuantizeLinear"
    scale = next(t for t in quantized.graph.initializer if t.name == q_node.input[1])
    value = onnx.numpy_helper.to_array(scale) / 8
    scale.CopyFrom(onnx.numpy_helper.from_array(value.astype(np.float32), scale.name))
    layers = {
        r.tensor: r for r in inspect_layers(quantized, float_model, {"image": make_images(32)})
    }
    assert layers["relu_out"].clipped_fraction > 0.3
    assert layers["relu_out"].sensitivity == max(r.sensitivity for r in layers.values())
    assert layers["relu_out"].sensitivity > 10 * layers["image"].sensitivity


def test_cli_inspect_writes_table_json_and_png(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    float_path, quant_path, data = tmp_path / "f.onnx", tmp_path / "q.onnx", tmp_path / "c.npz"
    float_model = make_convnet()
    onnx.save_model(float_model, float_path)
    onnx.save_model(_quantize(float_model, make_images(64)), quant_path)
    np.savez(data, image=make_images(20))
    report, png = tmp_path / "i.json", tmp_path / "i.png"
    code = main([
        "inspect", str(quant_path), "--reference", str(float_path), "--calibration", str(data),
        "--json", str(report), "--png", str(png), "--runs", "3",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "relu_out" in captured.out and "QLinearConv" in captured.out
    doc = json.loads(report.read_text())
    assert [layer["tensor"] for layer in doc["layers"]] == ["image", "relu_out", "pool_out", "flat"]
    assert doc["int8_kernels"]["QLinearConv"] == 1
    assert set(doc["op_time_ms"]) == {"quantized", "reference"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_inspect_unrelated_reference_is_one_line(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from onnx import TensorProto, helper

    quant_path, ref_path, data = tmp_path / "q.onnx", tmp_path / "r.onnx", tmp_path / "c.npz"
    onnx.save_model(_quantize(make_convnet(), make_images(32)), quant_path)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "unrelated",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])],
    )  # fmt: skip
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), ref_path)
    np.savez(data, image=make_images(4))
    out_json = tmp_path / "i.json"
    code = main([
        "inspect", str(quant_path), "--reference", str(ref_path), "--calibration", str(data),
        "--json", str(out_json),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "reference" in err and "Traceback" not in err
    assert not out_json.exists()
