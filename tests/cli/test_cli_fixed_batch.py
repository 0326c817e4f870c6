"""The CLI on a model whose batch is fixed to 1 (as ddddocr's): ``quantize``, ``bench
--reference``, ``verify`` and ``inspect`` run every sample, one call each, where they used to
feed 16, 64 or all samples at once and stop on ONNX Runtime's "Got: 16 Expected: 1"."""

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
from quanta.runtime import make_session

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def fix_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """The model with its input's and output's first dimension fixed to ``batch``."""
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    onnx.checker.check_model(model)
    return model


@pytest.fixture(autouse=True)
def short_latency_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = functools.partial(quanta.runtime.bench_models, budget_s=0.02)
    monkeypatch.setattr(quanta.runtime, "bench_models", fast)


@pytest.fixture(params=[1, 2], ids=["batch1", "batch2"])
def batch(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def paths(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path, batch: int
) -> dict[str, Path]:
    """float.onnx (batch fixed), int8.onnx made from it by the CLI, calib.npz, eval.npz."""
    p = {k: tmp_path / f"{k}.{ext}" for k, ext in
         (("float", "onnx"), ("int8", "onnx"), ("calib", "npz"), ("eval", "npz"))}  # fmt: skip
    onnx.save_model(fix_batch(make_convnet(), batch), p["float"])
    np.savez(p["calib"], image=make_images(24, seed=2))
    np.savez(p["eval"], image=make_images(10, seed=7))
    code = main(["quantize", str(p["float"]), "-o", str(p["int8"]), "--mode", "static",
                 "--calibration", str(p["calib"])])  # fmt: skip
    assert code == 0
    return p


def test_the_model_refuses_other_batch_sizes(paths: dict[str, Path], batch: int) -> None:
    # what the tools must work around: one call of 10 samples is refused
    session = make_session(paths["int8"])
    with pytest.raises(Exception, match=f"Expected: {batch}"):
        session.run(None, {"image": np.zeros((10, 1, 8, 8), np.float32)})


def test_bench_reference_on_fixed_batch(
    paths: dict[str, Path], batch: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "bench.json"
    code = main(["bench", str(paths["int8"]), "--reference", str(paths["float"]), "--data",
                 str(paths["eval"]), "--batch", "1,16", "--json", str(json_path)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    skipped = "16" if batch == 1 else "1, 16"
    said = f"batch fixed to {batch} by the model's inputs; timed at batch {batch} only (batch "
    assert said + f"{skipped} not timed" in captured.out.replace("\n", " ")
    (model,) = json.loads(json_path.read_text())["models"]
    assert model["fixed_batch"] == batch and set(model["latency_ms"]) == {str(batch)}
    fid = model["fidelity"]["logits"]
    assert fid["samples"] == 10  # every sample, not the first call's one
    assert fid["cosine_mean"] > 0.99  # the int8 model against its own float model


def test_verify_on_fixed_batch(
    paths: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "verify.json"
    code = main(["verify", str(paths["int8"]), "--inputs", str(paths["eval"]),
                 "--json", str(report)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(report.read_text())
    assert doc["samples"] == 10
    assert doc["outputs"]["logits"]["values"] == 10 * 10  # 10 samples of 10 logits, each once


def test_inspect_on_fixed_batch(
    paths: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "inspect.json"
    code = main(["inspect", str(paths["int8"]), "--reference", str(paths["float"]), "--calibration",
                 str(paths["eval"]), "--runs", "2", "--json", str(report)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "10 samples" in captured.out
