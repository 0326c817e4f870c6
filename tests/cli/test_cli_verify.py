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


def _report(n_tensors: int, reasons: dict[str, str]):  # type: ignore[no-untyped-def]
    """A VerifyReport whose tensor ``t{i}`` is equal on ``1 - i/1000`` of its 1,000 values."""
    from quanta.ref.verify import Agreement, OutputAgreement, VerifyReport

    def agreement(name: str, differ: int) -> OutputAgreement:
        op = Agreement(equal=1000 - differ, values=1000, max_diff_steps=1 if differ else 0)
        return OutputAgreement(name, "uint8", op, None)

    tensors = {f"t{i}": agreement(f"t{i}", i) for i in range(n_tensors)}
    return VerifyReport(
        {"y": agreement("y", 0)}, tensors, {"Conv": 1}, {"Sigmoid": 2, "Mul": 1}, reasons, 4,
        from_float=[f"f{i}" for i in range(10)],
    )  # fmt: skip


def _rendered(renderable) -> str:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    console = Console(width=400, file=io.StringIO())
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


REASONS = {
    "s1": "no integer kernel for Sigmoid", "s2": "no integer kernel for Sigmoid",
    "m": "input 's1_out' is not quantized",
}  # fmt: skip


def test_verify_shows_the_least_equal_tensors_and_counts_the_rest() -> None:
    from quanta.cli import verify

    text = _rendered(verify._table(_report(40, REASONS), "t", verify.SHOWN))
    rows = [line.split()[1] for line in text.splitlines() if line.startswith("│ t")]
    # the 16 least equal (t24..t39: most values differ), in graph order
    assert rows == [f"t{i}" for i in range(24, 40)]
    assert (
        "24 more quantized tensor(s), each at least 97.7000% equal op by op and at most 1" in text
    )
    everything = _rendered(verify._table(_report(40, REASONS), "t", None))
    assert sum(line.startswith("│ t") for line in everything.splitlines()) == 40
    assert "more quantized tensor" not in everything
    assert "cosine (e2e)" in everything  # every column has a header


def test_verify_groups_float_ops_by_reason(capsys: pytest.CaptureFixture[str]) -> None:
    from quanta.cli import verify

    verify._print_ops(_report(2, REASONS), verbose=False)
    text = capsys.readouterr().out
    assert "  2 op(s): no integer kernel for Sigmoid (e.g. 's1')" in text
    assert "  1 op(s): an input is not quantized (e.g. 'm')" in text
    assert "f0, f1, f2, f3, f4, f5, f6, f7 and 2 more (--verbose lists them)" in text
    verify._print_ops(_report(2, REASONS), verbose=True)
    text = capsys.readouterr().out
    assert "  s2: no integer kernel for Sigmoid" in text and "  m: input 's1_out'" in text
    assert "f9" in text and "more (--verbose" not in text
