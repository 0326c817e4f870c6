"""A TFLite file lists each model input once: LiteRT then reports one input detail per input.
The writer once listed a float input read by a QuantizeLinear twice (``inputs = [0, 0]``); the
file without the duplicate computes the same bytes, checked against that file rebuilt here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from quanta.cli import main
from quanta.tflite import onnx_to_tflite
from quanta.tflite.convert import _uint8_inputs, convert
from quanta.tflite.ranges import recorded_ranges

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)


def _run(data: bytes, x: np.ndarray) -> tuple[int, np.ndarray]:
    """(how many input details LiteRT reports, the output for each NCHW sample of ``x``)."""
    it = litert.Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    inputs, (out,) = it.get_input_details(), it.get_output_details()
    ys = []
    for sample in x.transpose(0, 2, 3, 1)[:, None]:  # (N, 1, H, W, C)
        for d in inputs:
            it.set_tensor(d["index"], sample.astype(d["dtype"]))
        it.invoke()
        ys.append(it.get_tensor(out["index"]).copy())
    return len(inputs), np.concatenate(ys)


@pytest.mark.parametrize(
    "argv",
    [["quantize", "-o", "q.tflite"], ["quantize", "-o", "q.tflite", "--input-uint8"],
     ["export-tflite", "q.onnx", "-o", "q.tflite"]],
    ids=["quantize", "quantize_uint8", "export"],
)  # fmt: skip
def test_each_input_is_listed_once(
    argv: list[str], make_convnet: Callable[..., onnx.ModelProto],
    make_images: Callable[..., np.ndarray], tmp_path: Path,
) -> None:  # fmt: skip
    src, calib, q = tmp_path / "m.onnx", tmp_path / "c.npz", tmp_path / "q.onnx"
    onnx.save_model(make_convnet(), src)
    np.savez(calib, image=make_images(32))
    assert main(["quantize", str(src), "-o", str(q), "--calibration", str(calib)]) == 0
    if argv[0] == "quantize":
        argv = ["quantize", str(src), *argv[1:], "--calibration", str(calib)]
    argv = [str(tmp_path / a) if a.startswith("q.") else a for a in argv]
    assert main(argv) == 0
    uint8 = "--input-uint8" in argv
    x = make_images(16, seed=3)
    x = np.rint(x * 255) if uint8 else x
    data = (tmp_path / "q.tflite").read_bytes()
    count, got = _run(data, x)
    assert count == 1
    # the CLI wrote the int8 model of q.onnx; the file the writer made of it before the fix
    # listed its input twice
    model = onnx.load_model(q)
    assert onnx_to_tflite(model, recorded_ranges(model), input_uint8=uint8) == data
    old = convert(model, recorded_ranges(model))
    old.inputs.append(old.inputs[0])
    if uint8:
        _uint8_inputs(old)
    old_count, want = _run(old.serialize(), x)
    assert old_count == 2
    np.testing.assert_array_equal(got, want)  # bit-identical outputs
