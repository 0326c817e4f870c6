"""benchmarks/wild_models/commands.py's reading of a command's exit and output (fast): a
refusal is exit 2 with one ``quanta: error:`` line and no traceback; anything else that is not
a clean exit 0 is a crash; an exported .tflite must run in LiteRT beside ONNX Runtime."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "wild_models" / "commands.py"


def _load():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("wild_commands_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


commands = _load()
REFUSAL = "quanta: error: node 'x' (LSTM) has no TFLite form"


@pytest.mark.parametrize(
    ("rc", "text", "status"),
    [
        (0, "static: wrote m.onnx\nnote: something", "ok"),
        (2, f"loading\n{REFUSAL}\n", "refused"),
        (2, f"Traceback (most recent call last):\n  ...\n{REFUSAL}", "crash"),
        (1, "quanta: internal error: IndexError: list index out of range", "crash"),
        (0, "quanta: internal error: reported but exit 0", "crash"),
        (2, "usage: quanta ...\nquanta quantize: error: arguments are required", "crash"),
        (-9, "", "crash"),
    ],
)  # fmt: skip
def test_outcome(rc: int, text: str, status: str) -> None:
    got, why = commands.outcome(rc, text)
    assert got == status
    assert (why == "") == (status == "ok")
    if status == "refused":
        assert why == REFUSAL


def test_the_table_counts_and_lists_every_refusal_and_crash() -> None:
    ok = {"status": "ok", "why": "", "seconds": 1.0}
    doc = {
        "machine": "m", "commit": "c", "command": "cmd", "date": "d",
        "models": [
            {"name": "a", "size_ratio": 3.9, "commands": {
                "quantize": ok, "bench": ok, "verify": ok, "inspect": ok,
                "export-tflite": {"status": "refused", "why": REFUSAL, "seconds": 2.0}}},
            {"name": "b", "commands": {
                "quantize": {"status": "crash", "why": "exit 1: boom", "seconds": 3.0},
                **{c: {"status": "not run", "why": "quantize wrote nothing"}
                   for c in ("bench", "verify", "inspect", "export-tflite")}}},
        ],
    }  # fmt: skip
    md = commands.markdown(doc)
    assert (
        "quantize 1/2, bench 1/2, verify 1/2, inspect 1/2, export-tflite 0/2. Crashes or wrong "
        "exports: 1." in md
    )
    assert "| a | 3.90x | ok (1 s) | ok (1 s) | ok (1 s) | ok (1 s) | refused (2 s) |" in md
    assert "| b | - | crash (3 s) | not run | not run | not run | not run |" in md
    assert f"- a export-tflite: {REFUSAL}" in md and "- b quantize: exit 1: boom" in md


def test_an_export_that_litert_cannot_run_or_that_computes_otherwise_is_wrong(
    tmp_path: Path, make_convnet, make_images
) -> None:  # type: ignore[no-untyped-def]
    """Oracle: the float convnet exported by quanta runs in LiteRT with ONNX Runtime's outputs;
    a file with its bytes cut short, or another model's, does not."""
    pytest.importorskip(
        "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
    )
    import numpy as np
    import onnx

    from quanta.tflite.float_convert import float_onnx_to_tflite

    model, other = make_convnet(channels=8), make_convnet(channels=8, seed=7)
    onnx.save_model(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "ev.npz", image=make_images(8, seed=2))
    right, cut, wrong = (tmp_path / f"{n}.tflite" for n in ("right", "cut", "wrong"))
    right.write_bytes(float_onnx_to_tflite(model))
    cut.write_bytes(right.read_bytes()[: len(right.read_bytes()) // 2])
    wrong.write_bytes(float_onnx_to_tflite(other))
    status, why = commands.check_tflite(right, tmp_path / "m.onnx", tmp_path / "ev.npz", 120)
    assert status == "ok" and why.startswith("LiteRT vs ONNX Runtime cosine 1.0000"), why
    status, why = commands.check_tflite(cut, tmp_path / "m.onnx", tmp_path / "ev.npz", 120)
    assert status == "wrong" and why.startswith("LiteRT cannot run it: "), why
    status, why = commands.check_tflite(wrong, tmp_path / "m.onnx", tmp_path / "ev.npz", 120)
    assert status == "wrong" and "cosine" in why, why
