"""bench_rows / bench_markdown / bench_table / format_ops on hand-built BenchResults: every ratio
and delta is against the first result."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from rich.table import Table

from quanta.report import bench_markdown, bench_rows, bench_table, format_ops
from quanta.runtime import BenchResult, KernelCounts, Latency


def float_kernels() -> KernelCounts:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Gemm", ["r", "w2"], ["y"]),
    ]
    return KernelCounts(_graph(nodes, {}))


def static_kernels() -> KernelCounts:
    """Q -> QLinearConv -> MaxPool (int8) -> QLinearConv -> QGemm -> DQ, as ORT runs static int8."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
        helper.make_node("QLinearConv", ["xq", "s", "zp", "w", "s", "zp", "s", "zp"], ["c1"]),
        helper.make_node("MaxPool", ["c1"], ["p"], kernel_shape=[2, 2]),
        helper.make_node("QLinearConv", ["p", "s", "zp", "w", "s", "zp", "s", "zp"], ["c2"]),
        helper.make_node("QGemm", ["c2", "s", "zp", "w", "s", "zp", "b", "s", "zp"], ["g"]),
        helper.make_node("DequantizeLinear", ["g", "s", "zp"], ["y"]),
    ]
    return KernelCounts(_graph(nodes, {"s": np.float32(0.1), "zp": np.int8(0)}))


def _graph(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray]) -> onnx.GraphProto:
    return helper.make_graph(
        nodes,
        "optimized",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )


def result(
    name: str,
    size: int,
    acc: float | None,
    lat: dict[int, tuple[float, float]],
    kernels: KernelCounts,
) -> BenchResult:
    latency = {b: Latency(b, p50, p90, 100) for b, (p50, p90) in lat.items()}
    return BenchResult(name, f"{name}.onnx", size, acc, latency, kernels, 1)


def test_static_kernel_counts() -> None:
    k = static_kernels()
    assert k.int8 == {"QLinearConv": 2, "MaxPool": 1, "QGemm": 1}
    assert float_kernels().int8 == {}


def test_rows_against_the_first_result() -> None:
    results = [
        result("float", 4_000_000, 0.99, {1: (1.0, 1.2), 256: (50.0, 55.0)}, float_kernels()),
        result("static", 1_000_000, 0.988, {1: (0.5, 0.6), 256: (20.0, 25.0)}, static_kernels()),
        result("slow", 2_000_000, 0.995, {1: (4.0, 8.0), 256: (100.0, 120.0)}, float_kernels()),
    ]
    header, rows = bench_rows(results)
    assert header == [
        "model", "size", "smaller", "accuracy", "Δ acc",
        "batch 1 ms p50 (p90)", "speed-up", "batch 256 ms p50 (p90)", "speed-up",
        "int8 kernels run by ONNX Runtime",
    ]  # fmt: skip
    assert rows[0] == [
        "float", "4.00 MB", "1.00×", "99.00 %", "+0.00 pp", "1 (1.2)", "1.00×", "50 (55)",
        "1.00×", "none",
    ]  # fmt: skip
    assert rows[1] == [
        "static", "1.00 MB", "4.00×", "98.80 %", "-0.20 pp", "0.5 (0.6)", "2.00×", "20 (25)",
        "2.50×", "QLinearConv×2, MaxPool×1, QGemm×1",
    ]  # fmt: skip
    # slower than the baseline: speed-up below 1
    assert rows[2][2] == "2.00×" and rows[2][4] == "+0.50 pp"
    assert rows[2][6] == "0.25×" and rows[2][8] == "0.50×"


def test_baseline_is_whatever_comes_first() -> None:
    a = result("a", 1_000_000, 0.5, {1: (2.0, 2.0)}, float_kernels())
    b = result("b", 3_000_000, 0.75, {1: (1.0, 1.0)}, float_kernels())
    _, rows = bench_rows([b, a])
    assert rows[0][2] == "1.00×" and rows[1][2] == "3.00×"
    assert rows[1][4] == "-25.00 pp" and rows[1][6] == "0.50×"


def test_missing_accuracy_and_latency_show_a_dash() -> None:
    results = [
        result("float", 2_000_000, None, {1: (1.0, 1.0)}, float_kernels()),
        result("other", 1_000_000, 0.9, {256: (10.0, 12.0)}, float_kernels()),
    ]
    header, rows = bench_rows(results)
    assert header[5] == "batch 1 ms p50 (p90)" and header[7] == "batch 256 ms p50 (p90)"
    assert rows[0][3:5] == ["—", "—"]
    assert rows[1][3:5] == ["90.00 %", "—"]  # no baseline accuracy to compare with
    assert rows[0][7:9] == ["—", "—"] and rows[1][5:7] == ["—", "—"]
    assert rows[1][7:9] == ["—", "—"]  # the baseline has no batch 256


def test_markdown_and_rich_table() -> None:
    results = [
        result("float", 4_000_000, 0.99, {1: (1.0, 1.2)}, float_kernels()),
        result("static", 1_000_000, 0.988, {1: (0.5, 0.6)}, static_kernels()),
    ]
    md = bench_markdown(results).splitlines()
    assert len(md) == 4
    assert md[0].startswith("| model | size | smaller |") and md[1] == "|" + "---|" * 8
    assert md[3].startswith("| static | 1.00 MB | 4.00× | 98.80 % | -0.20 pp |")
    table = bench_table(results, title="t")
    assert isinstance(table, Table) and len(table.columns) == 8 and table.row_count == 2


def test_format_ops_orders_by_count_then_name() -> None:
    assert format_ops({}) == "none"
    assert format_ops({"QGemm": 1, "QLinearConv": 2, "MaxPool": 1}) == (
        "QLinearConv×2, MaxPool×1, QGemm×1"
    )
