"""``quanta.quantize``: the same bytes as ``quanta quantize`` on the same model and data, from
every accepted form of model and calibration data; ``.save`` by suffix; one-line errors."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import quanta
from quanta.cli import main
from quanta.errors import InputError

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]

# NOTE: the latency check times kernels on this machine, so the layers it keeps float may
# differ between two runs; without it the bytes depend only on the model, data and options.
FIXED = {"latency_check": False}
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def images(make_images: MakeImages) -> np.ndarray:
    return make_images(24)


@pytest.fixture
def model_path(make_convnet: MakeConvnet, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save_model(make_convnet(), path)
    return path


def cli_bytes(model: Path, calib: np.ndarray, tmp_path: Path, *flags: str) -> bytes:
    """``quanta quantize`` in-process on ``model`` and an .npz of ``calib``."""
    calib_path = tmp_path / "cli_calib.npz"
    np.savez(calib_path, image=calib)
    out = tmp_path / "cli.onnx"
    argv = ["quantize", str(model), "-o", str(out), "--calibration", str(calib_path)]
    assert main([*argv, "--no-latency-check", *flags]) == 0
    return out.read_bytes()


def api_bytes(q: quanta.Quantized, tmp_path: Path) -> bytes:
    return q.save(tmp_path / "api.onnx").read_bytes()


def test_import_quanta_imports_neither_torch_nor_tensorflow() -> None:
    code = (
        "import sys, quanta; print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(quanta.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr


def test_path_and_npz_give_the_cli_bytes(
    model_path: Path, images: np.ndarray, tmp_path: Path
) -> None:
    expected = cli_bytes(model_path, images, tmp_path)
    np.savez(tmp_path / "c.npz", image=images)
    q = quanta.quantize(model_path, tmp_path / "c.npz", **FIXED)
    assert api_bytes(q, tmp_path) == expected
    assert any(n.op_type == "QuantizeLinear" for n in q.model.graph.node)


def test_dict_array_iterable_and_proto_give_the_same_bytes(
    model_path: Path, images: np.ndarray, tmp_path: Path
) -> None:
    expected = cli_bytes(model_path, images, tmp_path)
    proto = onnx.load_model(model_path)
    batches = (images[i : i + 5] for i in range(0, len(images), 5))  # last batch of 4
    for model, calibration in [
        (model_path, {"image": images}),
        (model_path, images),
        (model_path, batches),
        (proto, images),
    ]:
        q = quanta.quantize(model, calibration, **FIXED)
        assert api_bytes(q, tmp_path) == expected, type(calibration).__name__


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 3 * 3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)  # (N, 4, 3, 3)
        return self.fc(torch.flatten(x, 1))  # (N, 10)


def test_torch_module_and_dataloader_give_the_cli_bytes(images: np.ndarray, tmp_path: Path) -> None:
    from quanta.models.export import export_onnx

    torch.manual_seed(0)
    net = TinyNet()
    example = torch.from_numpy(images[:1])
    export_onnx(net, tmp_path / "net.onnx", example)
    expected = cli_bytes(tmp_path / "net.onnx", images, tmp_path)
    labels = torch.arange(len(images)) % 10
    loader = DataLoader(TensorDataset(torch.from_numpy(images), labels), batch_size=8)
    q = quanta.quantize(net, loader, example_inputs=example, **FIXED)
    assert api_bytes(q, tmp_path) == expected


def test_dynamic_and_fp16_need_no_calibration(model_path: Path, tmp_path: Path) -> None:
    for mode in ("dynamic", "fp16"):
        out = tmp_path / f"cli_{mode}.onnx"
        assert main(["quantize", str(model_path), "-o", str(out), "--mode", mode]) == 0
        q = quanta.quantize(model_path, mode=mode)
        assert q.save(tmp_path / f"api_{mode}.onnx").read_bytes() == out.read_bytes()


def test_save_tflite_runs_in_litert_and_matches_the_cli(
    model_path: Path, images: np.ndarray, tmp_path: Path
) -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    q = quanta.quantize(model_path, images, **FIXED)
    path = q.save(tmp_path / "api.tflite")
    np.savez(tmp_path / "c.npz", image=images)
    cli = tmp_path / "cli.tflite"
    argv = ["quantize", str(model_path), "-o", str(cli), "--calibration", str(tmp_path / "c.npz")]
    assert main([*argv, "--no-latency-check"]) == 0
    assert cli.read_bytes() == path.read_bytes()
    interpreter = litert.Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = images[:1].transpose(0, 2, 3, 1)  # NCHW -> NHWC, the TFLite model's layout
    if inp["dtype"] != np.float32:
        scale, zero_point = inp["quantization"]
        x = np.clip(np.rint(x / scale) + zero_point, -128, 127).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    assert interpreter.get_tensor(out["index"]).shape == (1, 10)


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_bad_option_names_it_and_the_valid_ones(model_path: Path, images: np.ndarray) -> None:
    with pytest.raises(InputError) as exc:
        quanta.quantize(model_path, images, per_chanel=False)
    assert re.search(r"'per_chanel'.*per_channel", one_line(exc))


def test_bad_suffix_and_tflite_without_source_are_one_line(
    model_path: Path, tmp_path: Path
) -> None:
    q = quanta.quantize(model_path, mode="dynamic")
    with pytest.raises(InputError) as exc:
        q.save(tmp_path / "m.pt")
    assert ".onnx or .tflite" in one_line(exc)
    with pytest.raises(InputError) as exc:  # a dynamic .tflite is written from the float model
        dataclasses.replace(q, source=None).save(tmp_path / "m.tflite")
    assert "static" in one_line(exc)
    assert not list(tmp_path.glob("m.*"))


def test_keras_without_the_extra_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as without quanta[tf]
    (tmp_path / "m.keras").write_bytes(b"PK")
    with pytest.raises(InputError) as exc:
        quanta.quantize(tmp_path / "m.keras", mode="fp16")
    assert "quanta[tf]" in one_line(exc)


def test_cli_tflite_output_refuses_auto_mode(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.tflite"
    argv = ["quantize", str(model_path), "-o", str(out), "--mode", "auto", "--eval", "mnist"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mode static" in err[0]
    assert not out.exists()


def test_the_readme_example_runs(
    make_convnet: MakeConvnet,
    make_images: MakeImages,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    section = README.read_text(encoding="utf-8").split("## Library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Library section has no python block"
    monkeypatch.chdir(tmp_path)
    onnx.save_model(make_convnet(), "model.onnx")
    np.savez("calibration.npz", image=make_images(16))
    exec(compile(match.group(1), "README.md", "exec"), {})  # noqa: S102 - the example itself
    assert Path("model_int8.onnx").is_file() and Path("model_int8.tflite").is_file()


def test_nhwc_calibration_for_an_nchw_model_is_one_line(
    model_path: Path, images: np.ndarray
) -> None:
    nhwc = images.transpose(0, 2, 3, 1)  # (N, 8, 8, 1) for the model's (N, 1, 8, 8)
    with pytest.raises(quanta.QuantaError) as exc:
        quanta.quantize(model_path, nhwc)
    message = one_line(exc)
    assert "takes NCHW (N, 1, 8, 8)" in message and "(N, 8, 8, 1), NHWC? transpose" in message
    assert "array.transpose(0, 3, 1, 2)" in message


def test_cli_tflite_output_skips_the_onnx_runtime_latency_check(
    model_path: Path,
    images: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The latency check times ONNX Runtime; for a .tflite (run by LiteRT) it is not applied,
    a note says so, and the file equals the one written with --no-latency-check."""
    pytest.importorskip("ai_edge_litert.interpreter")
    from quanta.graph import static

    def no_timing(*args: object, **kwargs: object) -> object:
        raise AssertionError("the ONNX Runtime latency check ran for a .tflite output")

    monkeypatch.setattr(static, "keep_slower_float", no_timing)
    np.savez(tmp_path / "c.npz", image=images)
    argv = ["quantize", str(model_path), "--calibration", str(tmp_path / "c.npz")]
    assert main([*argv, "-o", str(tmp_path / "a.tflite")]) == 0
    assert "latency check not applied: it times ONNX Runtime" in capsys.readouterr().err
    assert main([*argv, "-o", str(tmp_path / "b.tflite"), "--no-latency-check"]) == 0
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()
