"""``quanta bench`` in-process on two tiny models and an .npz evaluation set."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

import quanta.runtime
from quanta.cli import main
from quanta.graph import CalibrationData, quantize_static, save_model

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


def test_bench_writes_json(
    models: list[Path], eval_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "out.json"
    argv = [*map(str, models), "--data", str(eval_npz), "--batch", "1,4", "--json", str(json_path)]
    code = main(["bench", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "float" in captured.out and "int8" in captured.out
    doc = json.loads(json_path.read_text())
    assert doc["data"] == {"source": str(eval_npz), "samples": 12}
    assert doc["threads"] == 1
    assert [m["name"] for m in doc["models"]] == ["float", "int8"]
    for model, path in zip(doc["models"], models, strict=True):
        assert model["size_bytes"] == path.stat().st_size
        assert 0.0 <= model["accuracy"] <= 1.0
        assert set(model["latency_ms"]) == {"1", "4"}
        for lat in model["latency_ms"].values():
            assert set(lat) == {"p50", "p90", "runs"} and lat["p50"] <= lat["p90"]
        assert isinstance(model["int8_ops"], dict)
    assert doc["models"][0]["int8_ops"] == {}
    assert doc["models"][1]["int8_ops"]["QLinearConv"] == 1


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quanta: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("batch", ["0", "1,-4", "x", ""])
def test_bad_batch(
    models: list[Path], eval_npz: Path, capsys: pytest.CaptureFixture[str], batch: str
) -> None:
    code = main(["bench", str(models[0]), "--data", str(eval_npz), "--batch", batch])
    assert code == 2
    assert "--batch" in one_line_error(capsys)


def test_bad_threads(
    models: list[Path], eval_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", str(models[0]), "--data", str(eval_npz), "--threads", "0"]) == 2
    assert "--threads" in one_line_error(capsys)


def test_json_path_equal_to_a_model(
    models: list[Path], eval_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = models[1].read_bytes()
    argv = ["bench", *map(str, models), "--data", str(eval_npz), "--json", str(models[1])]
    assert main(argv) == 2
    assert "is also an input" in one_line_error(capsys)
    assert models[1].read_bytes() == before


def test_missing_second_model(
    models: list[Path], eval_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.onnx"
    assert main(["bench", str(models[0]), str(missing), "--data", str(eval_npz)]) == 2
    assert "missing.onnx" in one_line_error(capsys)


def test_without_data_a_model_that_does_not_take_mnist_images_is_refused(
    models: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "out.json"
    assert main(["bench", str(models[0]), "--json", str(json_path)]) == 2
    line = one_line_error(capsys)
    assert "takes image (N, 1, 8, 8), not 1x28x28 MNIST images; pass --data EVAL.npz" in line
    assert not json_path.exists()


def test_without_data_an_mnist_shaped_model_is_accepted(make_convnet: MakeConvnet) -> None:
    from quanta.cli.bench import _check_takes_mnist

    _check_takes_mnist("lenet.onnx", make_convnet(hw=28))  # (N, 1, 28, 28): no error
