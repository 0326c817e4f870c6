"""A ``.tflite`` path through ``load_model`` and ``quanta quantize``: the float TFLite model is
imported, quantized by the ONNX pipeline with NHWC calibration data, and bad files are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tflite
from tflite_builders import B, Builder

from quanta.cli import main
from quanta.errors import ModelError
from quanta.graph import load_model
from quanta.runtime import make_session
from quanta.tflite.writer import OpSpec, TensorSpec, options

A = tflite.ActivationFunctionType


def _convnet() -> bytes:
    """NHWC conv -> relu -> mean -> fully connected: a small float classifier."""
    b = Builder([1, 8, 8, 3])
    c = b.op(B.CONV_2D, [b.x, b.weight(6, 3, 3, 3), b.weight(6)], [1, 8, 8, 6],
             options("Conv2DOptions", Padding=tflite.Padding.SAME, StrideW=1, StrideH=1,
                     FusedActivationFunction=A.RELU))  # fmt: skip
    m = b.op(B.MEAN, [c, b.const(np.array([1, 2], np.int32))], [1, 6],
             options("ReducerOptions", KeepDims=False))  # fmt: skip
    y = b.op(B.FULLY_CONNECTED, [m, b.weight(4, 6), b.weight(4)], [1, 4],
             options("FullyConnectedOptions"))  # fmt: skip
    return b.finish(y)


def test_load_model_by_suffix_and_by_identifier(tmp_path: Path) -> None:
    data = _convnet()
    (tmp_path / "m.tflite").write_bytes(data)
    (tmp_path / "m.bin").write_bytes(data)  # no suffix: "TFL3" at bytes 4..8 says what it is
    for name in ("m.tflite", "m.bin"):
        model = load_model(tmp_path / name)
        assert "Conv" in {n.op_type for n in model.graph.node}
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == [1, 8, 8, 3]


def test_load_model_names_the_file_in_a_refusal(tmp_path: Path) -> None:
    b = Builder([1, 4, 4, 3])
    y = b.op(B.L2_NORMALIZATION, [b.x], [1, 4, 4, 3])
    path = tmp_path / "odd.tflite"
    path.write_bytes(b.finish(y))
    with pytest.raises(ModelError, match=r"odd\.tflite.*L2_NORMALIZATION \(operator 0\)"):
        load_model(path)


def test_quantize_cli_takes_a_tflite_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.tflite").write_bytes(_convnet())
    x = np.random.default_rng(0).uniform(0, 1, (40, 8, 8, 3)).astype(np.float32)  # NHWC
    np.savez(tmp_path / "calib.npz", x=x)
    out = tmp_path / "m_int8.onnx"
    code = main(["quantize", str(tmp_path / "m.tflite"), "-o", str(out),
                 "--calibration", str(tmp_path / "calib.npz")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    q = load_model(out)
    assert "QuantizeLinear" in {n.op_type for n in q.graph.node}
    float_y = make_session(load_model(tmp_path / "m.tflite").SerializeToString()).run(
        None, {"x": x[:1]}
    )[0]
    int8_y = make_session(out).run(None, {"x": x[:1]})[0]
    assert float_y.shape == int8_y.shape == (1, 4)
    # int8 of a 3-layer net: within a few percent of the output's range
    assert np.abs(float_y - int8_y).max() <= 0.05 * max(1.0, float(np.abs(float_y).max()))


def test_quantize_cli_refuses_a_quantized_tflite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = Builder([1, 4, 4, 3])
    q = b.model.add(TensorSpec("q", [1, 4, 4, 3], np.dtype(np.int8), scale=[0.1], zero_point=[0]))
    b.model.ops.append(OpSpec(B.QUANTIZE, [b.x], [q]))
    (tmp_path / "q.tflite").write_bytes(b.finish(q))
    np.savez(tmp_path / "calib.npz", x=np.zeros((4, 4, 4, 3), np.float32))
    out = tmp_path / "out.onnx"
    code = main(["quantize", str(tmp_path / "q.tflite"), "-o", str(out),
                 "--calibration", str(tmp_path / "calib.npz")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "already quantized" in err[0] and "pass the float model" in err[0]
    assert not out.exists()
