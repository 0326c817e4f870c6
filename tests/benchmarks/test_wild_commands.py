"""benchmarks/wild_models/commands.py's reading of a command's exit and output (fast): a
refusal is exit 2 with one ``quanta: error:`` line and no traceback; anything else that is not
a clean exit 0 is a crash."""

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
    assert "quantize 1/2, bench 1/2, verify 1/2, inspect 1/2, export-tflite 0/2. Crashes: 1." in md
    assert "| a | 3.90x | ok (1 s) | ok (1 s) | ok (1 s) | ok (1 s) | refused (2 s) |" in md
    assert "| b | - | crash (3 s) | not run | not run | not run | not run |" in md
    assert f"- a export-tflite: {REFUSAL}" in md and "- b quantize: exit 1: boom" in md
