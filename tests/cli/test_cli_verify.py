"""``quanta verify`` in-process: a model with no int8 ops is refused in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from quanta.cli import main


def test_verify_on_a_float_model_is_a_one_line_error(
    make_convnet: Callable[..., onnx.ModelProto],
    make_images: Callable[..., np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_path, data, report = tmp_path / "float.onnx", tmp_path / "x.npz", tmp_path / "v.json"
    onnx.save_model(make_convnet(), model_path)
    np.savez(data, image=make_images(4))
    code = main(["verify", str(model_path), "--inputs", str(data), "--json", str(report)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("quanta: error: ")
    assert "has no int8 ops (QuantizeLinear/DequantizeLinear or QLinear*)" in lines[0]
    assert "pass a quantized one" in lines[0]
    assert not report.exists()
