"""bench_models: size, accuracy, latency and kernels of several models on one EvalSet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from quanta.errors import DataError
from quanta.graph import CalibrationData, quantize_static, save_model
from quanta.runtime import EvalSet, bench_models, make_session

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


@pytest.fixture
def models(make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path) -> list[Path]:
    model = make_convnet()
    q = quantize_static(model, CalibrationData({"image": make_images(32)})).model
    paths = [tmp_path / "float.onnx", tmp_path / "int8.onnx"]
    save_model(model, paths[0])
    save_model(q, paths[1])
    return paths


def test_bench_two_models(models: list[Path], make_images: MakeImages) -> None:
    images = make_images(20, seed=5)
    float_logits = make_session(models[0]).run(None, {"image": images})[0]
    labels = float_logits.argmax(1)  # the float model is right by construction
    # A lone array feeds the lone model input whatever its key.
    data = EvalSet({"pixels": images}, labels, "test arrays")
    steps: list[str] = []
    results = bench_models(models, data, batches=(1, 3), budget_s=0.02, on_step=steps.append)
    assert [r.name for r in results] == ["float", "int8"]
    assert [r.size_bytes for r in results] == [p.stat().st_size for p in models]
    assert results[0].accuracy == 1.0
    assert results[1].accuracy is not None and 0.0 <= results[1].accuracy <= 1.0
    for r in results:
        assert sorted(r.latency) == [1, 3]
        assert all(lat.runs >= 10 and lat.p50_ms <= lat.p90_ms for lat in r.latency.values())
    assert results[0].kernels.int8 == {}
    assert results[1].kernels.int8["QLinearConv"] == 1
    assert steps == [
        "accuracy and kernels of float",
        "accuracy and kernels of int8",
        "latency at batch 1",
        "latency at batch 3",
    ]
    doc = results[1].as_dict()
    assert set(doc) == {
        "name", "path", "size_bytes", "accuracy", "latency_ms", "int8_ops", "ops", "threads",
    }  # fmt: skip
    assert set(doc["latency_ms"]) == {"1", "3"}  # type: ignore[arg-type]
    assert doc["int8_ops"]["QGemm"] == 1  # type: ignore[index]


def test_without_labels_accuracy_is_none(models: list[Path], make_images: MakeImages) -> None:
    data = EvalSet({"image": make_images(4)}, None, "unlabelled")
    (result,) = bench_models(models[:1], data, batches=(2,), budget_s=0.01)
    assert result.accuracy is None


def test_uint8_input_model_gets_rounded_pixels(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["pixels"], ["logits"], to=TensorProto.FLOAT)],
        "pixels",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
    )
    path = tmp_path / "u8.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    labels = np.arange(10) % 10
    images = np.eye(10, dtype=np.float32) * 0.9  # [0, 1] floats: fed as rint(255 * x)
    (result,) = bench_models(
        [path], EvalSet({"x": images}, labels, "t"), batches=(1,), budget_s=0.01
    )
    assert result.accuracy == 1.0


def test_missing_input_for_a_two_input_model(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    path = tmp_path / "add.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    data = EvalSet({"a": np.zeros((2, 2), np.float32)}, None, "t")
    with pytest.raises(DataError, match="the model needs"):
        bench_models([path], data, batches=(1,), budget_s=0.01)


def test_reference_ending_in_softmax_reports_confident_agreement(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path
) -> None:
    model = make_convnet(head="Softmax")
    for init in model.graph.initializer:  # sharper logits: some samples confident
        if init.name == "fc.weight":
            init.CopyFrom(
                onnx.numpy_helper.from_array(20 * onnx.numpy_helper.to_array(init), init.name)
            )
    (tmp_path / "float.onnx").write_bytes(model.SerializeToString())
    images = make_images(20, seed=5)
    probs = make_session(tmp_path / "float.onnx").run(None, {"image": images})[0]
    labels = probs.argmax(1)
    data = EvalSet({"image": images}, labels, "test arrays")
    (result,) = bench_models(
        [tmp_path / "float.onnx"], data, batches=(1,), budget_s=0.01,
        reference=tmp_path / "float.onnx",
    )  # fmt: skip
    (fid,) = result.extra["fidelity"].values()  # type: ignore[attr-defined]
    # the oracle: confident samples are those whose own top probability is >= 0.5
    confident = int((probs.max(1) >= 0.5).sum())
    assert confident > 0
    assert fid["confident_samples"] == confident
    assert fid["top1_agreement_confident"] == 1.0  # the float model against itself
