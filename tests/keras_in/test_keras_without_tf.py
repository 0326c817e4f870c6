"""Without ``quanta[tf]``: a Keras model or SavedModel is one line naming the extra; and no other
path (``import quanta``, ``--help``, quantizing an ONNX model) ever imports TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

import quanta
from quanta.cli import main

EXTRA = "pip install 'quanta[tf]'"


@pytest.fixture
def no_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import tensorflow`` raises ImportError, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)


def keras_sources(tmp_path: Path) -> list[Path]:
    """A ``.keras`` and an ``.h5`` file and a SavedModel directory (their contents are never
    read: the missing extra is found first)."""
    saved = tmp_path / "saved_model"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    (tmp_path / "m.keras").write_bytes(b"PK")
    (tmp_path / "m.h5").write_bytes(b"\x89HDF")
    return [tmp_path / "m.keras", tmp_path / "m.h5", saved]


@pytest.mark.usefixtures("no_tensorflow")
def test_cli_without_the_extra_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for model in keras_sources(tmp_path):
        out = tmp_path / "q.onnx"
        assert main(["quantize", str(model), "-o", str(out), "--mode", "fp16"]) == 2
        captured = capsys.readouterr()
        (line,) = captured.err.strip().splitlines()
        assert EXTRA in line and "Traceback" not in captured.err
        assert not out.exists() and captured.out == ""


@pytest.mark.usefixtures("no_tensorflow")
def test_api_without_the_extra_is_one_line(tmp_path: Path) -> None:
    fake_keras_model = type("Sequential", (), {"__module__": "keras.src.models.sequential"})()
    for model in [*keras_sources(tmp_path), fake_keras_model]:
        with pytest.raises(quanta.QuantaError) as exc:
            quanta.quantize(model, mode="fp16")
        assert EXTRA in str(exc.value) and "\n" not in str(exc.value)


def test_no_other_path_imports_tensorflow(
    make_convnet: Callable[..., onnx.ModelProto], tmp_path: Path
) -> None:
    onnx.save_model(make_convnet(), tmp_path / "m.onnx")
    code = "\n".join(
        [
            "import contextlib, io, sys",
            "import quanta",
            "from quanta.cli import main",
            "for argv in (['--help'], ['quantize', '--help']):",
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):",
            "        main(argv)",
            "with contextlib.redirect_stdout(io.StringIO()):",
            "    assert main(['quantize', 'm.onnx', '-o', 'q.onnx', '--mode', 'dynamic']) == 0",
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(Path(quanta.__file__).parents[1])}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "q.onnx").exists()
