"""``quanta`` itself: usage errors exit 2 with one line, bugs exit 1 with one line."""

from __future__ import annotations

import argparse

import pytest

from quanta.cli import ExitStatus, main


def test_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == ExitStatus.USAGE == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quanta: error:")
    assert "'frobnicate'" in lines[0] and "Traceback" not in err


def test_unknown_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quantize", "m.onnx", "-o", "q.onnx", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quanta: error:") and "--bogus" in err and "Traceback" not in err


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "quantize" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["first", "last"])
def test_traceback_flag_shows_it(where: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = ["bench", "m.onnx", "--batch", "0"]
    line = ["--traceback", *line] if where == "first" else [*line, "--traceback"]
    assert main(line) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("quanta: error:")


def test_unexpected_exception_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from quanta.cli import bench

    def boom(args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(bench, "run", boom)
    assert main(["bench", "m.onnx"]) == ExitStatus.ERROR == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "quanta: internal error: RuntimeError: boom (rerun with --traceback and report it)"
    ]
