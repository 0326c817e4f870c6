"""explain(): sentences cite the measured figures (size ratios, latency ratios, accuracy deltas,
kernel counts) and say "slower" when a variant is slower than float."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from quanta.report.explain import explain
from quanta.runtime import BenchResult, KernelCounts, Latency


def _kernels(ops: list[tuple[str, list[str]]], int8_zp: bool = False) -> KernelCounts:
    nodes = [helper.make_node(op, inputs, [f"out{i}"]) for i, (op, inputs) in enumerate(ops)]
    inits = [numpy_helper.from_array(np.float32(0.1), "s")]
    if int8_zp:
        inits.append(numpy_helper.from_array(np.int8(0), "zp"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)]
    return KernelCounts(helper.make_graph(nodes, "optimized", inputs, [], inits))


FLOAT_OPS = [("Conv", ["x"]), ("Conv", ["x"]), ("Gemm", ["x"]), ("Gemm", ["x"])]
DYNAMIC_OPS = [
    ("Conv", ["x"]),
    ("Conv", ["x"]),
    ("DynamicQuantizeLinear", ["x"]),
    ("MatMulInteger", ["x"]),
    ("DynamicQuantizeLinear", ["x"]),
    ("MatMulInteger", ["x"]),
]
STATIC_OPS = [
    ("QuantizeLinear", ["x", "s", "zp"]),
    ("QLinearConv", ["out0", "s", "zp", "w", "s", "zp", "s", "zp"]),
    ("QLinearConv", ["out1", "s", "zp", "w", "s", "zp", "s", "zp"]),
    ("QGemm", ["out2", "s", "zp", "w", "s", "zp", "b", "s", "zp"]),
    ("QGemm", ["out3", "s", "zp", "w", "s", "zp", "b", "s", "zp"]),
    ("DequantizeLinear", ["out4", "s", "zp"]),
]


def _result(
    name: str, size: int, acc: float, b1: float, b256: float, ops: list[tuple[str, list[str]]]
) -> BenchResult:
    latency = {1: Latency(1, b1, b1 * 1.1, 50), 256: Latency(256, b256, b256 * 1.1, 10)}
    kernels = _kernels(ops, int8_zp=name in ("static", "qat", "qat_uint8"))
    return BenchResult(name, f"lenet_{name}.onnx", size, acc, latency, kernels, 1)


def _results(qat_uint8_acc: float = 0.9912) -> dict[str, BenchResult]:
    return {
        "float": _result("float", 13_100_000, 0.9900, 1.00, 100.0, FLOAT_OPS),
        "fp16": _result("fp16", 6_550_000, 0.9900, 1.00, 100.0, FLOAT_OPS),
        # 4.00x smaller, 1.25x slower at batch 1, 2.00x faster at batch 256
        "dynamic": _result("dynamic", 3_275_000, 0.9890, 1.25, 50.0, DYNAMIC_OPS),
        "static": _result("static", 3_300_000, 0.9880, 0.40, 25.0, STATIC_OPS),
        "qat": _result("qat", 3_300_000, 0.9912, 0.40, 25.0, STATIC_OPS),
        "qat_uint8": _result("qat_uint8", 3_300_000, qat_uint8_acc, 0.40, 25.0, STATIC_OPS),
    }


def _line(lines: list[str], start: str) -> str:
    (line,) = [x for x in lines if x.startswith(start)]
    return line


def test_dynamic_cites_its_measured_numbers() -> None:
    lines = explain(_results(), "Intel Xeon, AVX2, no VNNI")
    dynamic = _line(lines, "dynamic ")
    assert "dynamic is 4.00× smaller" in dynamic
    assert "1.25× slower at batch 1" in dynamic
    assert "2.00× faster at batch 256" in dynamic
    assert "98.90 % (-0.10 pp vs float)" in dynamic
    assert "MatMulInteger×2" in dynamic
    assert "the 2 convolutions kept float arithmetic" in dynamic


def test_fp16_static_and_qat_figures() -> None:
    lines = explain(_results(), "some cpu")
    fp16 = _line(lines, "fp16 ")
    assert "fp16 is 2.00× smaller" in fp16 and "1.00× faster at batch 1" in fp16
    assert "Conv×2, Gemm×2" in fp16
    static = _line(lines, "static ")
    assert "static is 3.97× smaller" in static
    assert "2.50× faster at batch 1" in static and "4.00× faster at batch 256" in static
    assert "98.80 % (-0.20 pp vs float)" in static
    assert "QGemm×2, QLinearConv×2" in static
    assert "1 QuantizeLinear and 1 DequantizeLinear" in static
    qat = _line(lines, "qat has")
    assert "99.12 % (+0.12 pp vs float)" in qat and "(+0.32 pp vs static" in qat


def test_slower_variant_says_slower() -> None:
    results = _results()
    results["static"] = _result("static", 3_300_000, 0.9880, 3.00, 150.0, STATIC_OPS)
    static = _line(explain(results, "cpu"), "static ")
    assert "3.00× slower at batch 1" in static and "1.50× slower at batch 256" in static
    assert "faster" not in static


def test_qat_uint8_identical_or_different() -> None:
    same = _line(explain(_results(), "cpu"), "qat_uint8")
    assert "is identical to qat" in same
    other = _line(explain(_results(qat_uint8_acc=0.9902), "cpu"), "qat_uint8")
    assert "differs from qat by -0.10 pp" in other


def test_only_present_variants_are_explained() -> None:
    results = _results()
    lines = explain({"float": results["float"], "dynamic": results["dynamic"]}, "cpu")
    assert len(lines) == 1 and lines[0].startswith("dynamic is")


def test_notes_are_appended() -> None:
    lines = explain(_results(), "cpu", {"qat": "NOTE-Q.", "static": "NOTE-S."})
    assert _line(lines, "qat has").endswith(" NOTE-Q.")
    assert _line(lines, "static ").endswith(" NOTE-S.")


def test_machine_sentence() -> None:
    assert "no VNNI instructions" in explain(_results(), "Xeon, AVX2, no VNNI")[-1]
    assert "has VNNI" in explain(_results(), "Xeon, AVX-512 VNNI")[-1]
    assert not any("VNNI" in x for x in explain(_results(), "Apple M2"))
