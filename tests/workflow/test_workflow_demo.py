"""End to end: ``quanta demo`` trains LeNet, makes all six variants, benchmarks them and writes the
report; report.json follows its documented schema. Slow (~90 s): trains for two epochs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quanta.cli import main
from quanta.workflow import VARIANTS
from quanta.workflow.classic import TFLITE_VARIANTS, tflite_available

pytestmark = pytest.mark.slow

NAMES = ["float", "fp16", "dynamic", "static", "qat", "qat_uint8"]
# with LiteRT installed (the dev extra), the demo also writes and runs the TFLite files
ALL_NAMES = NAMES + (list(TFLITE_VARIANTS) if tflite_available() else [])
INT8 = ["dynamic", "static", "qat", "qat_uint8"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("demo") / "d"
    code = main(["demo", "--out", str(out), "--epochs", "2"])
    return code, out


@pytest.fixture(scope="module")
def report(demo: tuple[int, Path]) -> dict[str, Any]:
    _, out = demo
    return json.loads((out / "report.json").read_text())


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def test_exit_code_and_files(demo: tuple[int, Path]) -> None:
    code, out = demo
    assert code == 0
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert (out / "tradeoff.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    md = (out / "report.md").read_text()
    assert "![size vs accuracy](tradeoff.png)" in md
    assert all(f"| {name} |" in md for name in ALL_NAMES)
    assert not list(out.glob(".*.tmp"))  # atomic writes left no temporaries


def test_report_schema(report: dict[str, Any]) -> None:
    dataset = report["dataset"]
    assert _is_int(dataset["train"]) and _is_int(dataset["test"])
    assert dataset["train"] > 0 and dataset["test"] > 0
    assert isinstance(dataset["source"], str) and dataset["source"]
    assert _is_int(report["threads"]) and report["threads"] == 1
    assert isinstance(report["machine"], str) and report["machine"]
    assert [v["name"] for v in report["variants"]] == ALL_NAMES
    assert NAMES == list(VARIANTS)
    for v in report["variants"]:
        assert isinstance(v["path"], str)
        assert _is_int(v["size_bytes"]) and v["size_bytes"] > 0
        assert isinstance(v["accuracy"], float) and 0.0 <= v["accuracy"] <= 1.0
        for key in ("latency_ms_b1_p50", "latency_ms_b256_p50"):
            assert isinstance(v[key], float) and v[key] > 0.0, key
        assert isinstance(v["int8_ops"], dict)
        assert all(isinstance(k, str) and _is_int(n) and n > 0 for k, n in v["int8_ops"].items())


def test_paths_are_relative_and_sizes_match(demo: tuple[int, Path], report: dict[str, Any]) -> None:
    _, out = demo
    for v in report["variants"]:
        assert not Path(v["path"]).is_absolute(), v["path"]
        path = out / v["path"]
        assert path.is_file(), v["path"]
        assert path.stat().st_size == v["size_bytes"], v["name"]


def test_int8_variants_are_about_four_times_smaller(report: dict[str, Any]) -> None:
    size = {v["name"]: v["size_bytes"] for v in report["variants"]}
    for name in INT8:
        assert size["float"] / size[name] >= 3.9, (name, size["float"] / size[name])
    assert size["float"] / size["fp16"] >= 1.9


def test_int8_kernels_ran(report: dict[str, Any]) -> None:
    ops = {v["name"]: v["int8_ops"] for v in report["variants"]}
    for name in ("static", "qat", "qat_uint8"):
        assert ops[name].get("QLinearConv", 0) >= 1, (name, ops[name])
        assert ops[name].get("QGemm", 0) >= 1, (name, ops[name])
    assert ops["float"] == {} and ops["fp16"] == {}
    assert ops["dynamic"]  # some integer kernel (MatMulInteger or a fused variant)


def test_accuracies(report: dict[str, Any]) -> None:
    acc = {v["name"]: v["accuracy"] for v in report["variants"]}
    assert acc["float"] >= 0.95
    assert acc["static"] >= acc["float"] - 0.005
    assert acc["qat_uint8"] == acc["qat"]
