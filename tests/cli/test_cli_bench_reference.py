"""``quanta bench --reference`` in-process: the fidelity table and JSON, and its errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import quanta.runtime
from quanta.cli import main
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static, save_model

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]

FIDELITY_KEYS = {"top1_agreement", "cosine_mean", "cosine_min", "max_abs_error", "sqnr_db"}


@pytest.fixture
def models(make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path) -> list[Path]:
    """[float, int8] copies of the tiny convnet."""
    model = make_convnet()
    config = QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=None)
    q = quantize_static(model, CalibrationData({"image": make_images(32)}), config).model
    paths = [tmp_path / "float.onnx", tmp_path / "int8.onnx"]
    save_model(model, paths[0])
    save_model(q, paths[1])
    return paths


@pytest.fixture
def eval_npz(make_images: MakeImages, tmp_path: Path) -> Path:
    path = tmp_path / "eval.npz"
    np.savez(path, image=make_images(12, seed=7), labels=np.arange(12) % 10)
    return path


@pytest.fixture(autouse=True)
def short_latency_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI times each batch size for ~2 s; the same code with a 0.02 s budget keeps this fast.
    fast = functools.partial(quanta.runtime.bench_models, budget_s=0.02)
    monkeypatch.setattr(quanta.runtime, "bench_models", fast)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quanta: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_bench_reference_writes_fidelity(
    models: list[Path], eval_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    float_path, int8_path = models
    json_path = tmp_path / "out.json"
    argv = [
        "bench", str(int8_path), "--reference", str(float_path), "--data", str(eval_npz),
        "--batch", "1", "--json", str(json_path),
    ]  # fmt: skip
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "fidelity against" in captured.out
    assert "logits" in captured.out  # one row per output
    doc = json.loads(json_path.read_text())
    (model,) = doc["models"]
    assert model["name"] == "int8"
    assert set(model["fidelity"]) == {"logits"}
    fid = model["fidelity"]["logits"]
    assert FIDELITY_KEYS <= set(fid)
    assert fid["samples"] == 12
    assert 0.0 <= fid["top1_agreement"] <= 1.0
    assert 0.9 < fid["cosine_min"] <= fid["cosine_mean"] <= 1.0 + 1e-6
    assert fid["max_abs_error"] > 0.0  # int8 is not bit-exact with float
    assert fid["sqnr_db"] > 10.0


def test_reference_against_itself_is_exact(
    models: list[Path], eval_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    float_path, int8_path = models
    json_path = tmp_path / "out.json"
    argv = [
        "bench", str(float_path), str(int8_path), "--reference", str(float_path),
        "--data", str(eval_npz), "--batch", "1", "--json", str(json_path),
    ]  # fmt: skip
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(json_path.read_text())
    assert [m["name"] for m in doc["models"]] == ["float", "int8"]
    same = doc["models"][0]["fidelity"]["logits"]
    assert same["top1_agreement"] == 1.0 and same["cosine_min"] == 1.0
    assert same["max_abs_error"] == 0.0
    assert same["sqnr_db"] is None  # infinite: no noise
    assert "∞" in captured.out
    assert FIDELITY_KEYS <= set(doc["models"][1]["fidelity"]["logits"])


def test_without_reference_no_fidelity(
    models: list[Path], eval_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "out.json"
    argv = ["bench", str(models[1]), "--data", str(eval_npz), "--batch", "1",
            "--json", str(json_path)]  # fmt: skip
    assert main(argv) == 0
    assert "fidelity against" not in capsys.readouterr().out
    assert "fidelity" not in json.loads(json_path.read_text())["models"][0]


def test_missing_reference(
    models: list[Path], eval_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.onnx"
    json_path = tmp_path / "out.json"
    argv = ["bench", str(models[1]), "--reference", str(missing), "--data", str(eval_npz),
            "--batch", "1", "--json", str(json_path)]  # fmt: skip
    assert main(argv) == 2
    assert "missing.onnx" in one_line_error(capsys)
    assert not json_path.exists()


def test_json_path_equal_to_the_reference(
    models: list[Path], eval_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = models[0].read_bytes()
    argv = ["bench", str(models[1]), "--reference", str(models[0]), "--data", str(eval_npz),
            "--json", str(models[0])]  # fmt: skip
    assert main(argv) == 2
    assert "is also an input" in one_line_error(capsys)
    assert models[0].read_bytes() == before


def test_reference_with_other_output_names(
    models: list[Path], eval_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = onnx.load_model(models[0])
    renamed.graph.node.append(helper.make_node("Identity", ["logits"], ["scores"]))
    renamed.graph.output[0].name = "scores"
    other = tmp_path / "renamed.onnx"
    save_model(renamed, other)
    argv = ["bench", str(models[1]), "--reference", str(other), "--data", str(eval_npz),
            "--batch", "1"]  # fmt: skip
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert "scores" in line and "int8.onnx" in line
