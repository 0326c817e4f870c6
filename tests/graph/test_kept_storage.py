"""Float16 storage for the weights of nodes kept float for their answers
(``quanta.graph.storage.kept_fp16``): such a node was kept float to avoid its rounding, so
while the fallback search measures it, a weight of ``EXACT_BELOW`` values or more is stored
float16, not int8, where the fully int8 file had room for it above ``SIZE_FLOOR``.

Oracle: the float model in ONNX Runtime on fresh samples, and the initializers' dtypes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static, static
from quanta.graph.storage import SIZE_FLOOR, kept_fp16, kept_room
from quanta.graph.weight_only import EXACT_BELOW
from quanta.runtime import run_model
from quanta.runtime.fidelity import argmax_agreement

T, K, H, C, WIDE = 6, 8, 64, 32, 2048
GAP = 0.02
CONFIG = QuantizeConfig(min_fidelity=0.997, latency_check=False, max_float=3)


def reader(wide: int = WIDE) -> onnx.ModelProto:
    """x (N, T, K) -> MatMul (K x H) -> Relu -> MatMul (H x C, the head) -> y (N, T, C), and
    from the Relu also MatMul (H x wide) -> Relu -> e (N, T, wide), which holds most bytes.

    Classes 0 and 1 have head columns GAP apart: int8 rounding of the head (one scale per
    column) swaps them at some positions, float16 rounding (2^-11 relative) seldom."""
    base = rand(H, 1, seed=2)
    head = np.concatenate(
        [base, base + GAP * rand(H, 1, seed=3), rand(H, C - 2, seed=4) - 2.0], axis=1
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="head"),
        helper.make_node("MatMul", ["r", "w3"], ["f"], name="wide"),
        helper.make_node("Relu", ["f"], ["e"], name="relu2"),
    ]
    inits = {"w1": rand(K, H, seed=1), "w2": head, "w3": rand(H, wide, seed=6)}
    return make_model(
        nodes, {"x": ["N", T, K]}, {"y": ["N", T, C], "e": ["N", T, wide]}, inits, "reader"
    )


def data() -> CalibrationData:
    return CalibrationData({"x": rand(128, T, K, seed=5, std=1.0)})


def head_storage(model: onnx.ModelProto) -> int:
    """The stored dtype of the head's weight, followed back through its decoder."""
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    name = next(n for n in model.graph.node if n.name == "head").input[1]
    while name not in inits:
        node = producer[name]
        assert node.op_type in ("Cast", "Mul", "DequantizeLinear"), node.op_type
        name = node.input[0]
    return inits[name].data_type


def test_a_head_kept_float_for_its_answers_stores_its_weight_float16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert H * C >= EXACT_BELOW  # not one of the small weights that stay float32
    model = reader()
    result = quantize_static(model, data(), CONFIG)
    assert "head" in {f.name for f in result.float_nodes}
    assert head_storage(result.model) == onnx.TensorProto.FLOAT16
    assert len(model.SerializeToString()) / len(result.model.SerializeToString()) >= SIZE_FLOOR
    # the same quantization without the storage step stores the head's weight int8
    monkeypatch.setattr(static, "store_kept_fp16", lambda b, built, r, *_: (built, r))
    int8 = quantize_static(model, data(), CONFIG)
    assert "head" in {f.name for f in int8.float_nodes}
    assert head_storage(int8.model) == onnx.TensorProto.INT8
    # checked in ONNX Runtime on fresh samples: more positions keep float's class
    fresh = {"x": rand(64, T, K, seed=11, std=1.0)}
    reference = run_model(model, fresh)[:1]
    ours, theirs = run_model(result.model, fresh)[:1], run_model(int8.model, fresh)[:1]
    assert argmax_agreement(ours, reference) > argmax_agreement(theirs, reference) + 0.05


def test_no_float16_where_it_would_break_the_size_floor() -> None:
    # the head holds most of the bytes: no room for float16 above 3.5x
    result = quantize_static(reader(wide=8), data(), CONFIG)
    assert "head" in {f.name for f in result.float_nodes}
    assert head_storage(result.model) == onnx.TensorProto.INT8


def test_smallest_first_within_the_budget_and_never_a_small_weight() -> None:
    model = reader()
    # w1 (512 values) stays float32 anyway; w2 (2,048) fits 3,000 bytes, w3 (131,072) does not
    assert kept_fp16(model, {"mm1", "head", "wide"}, 3000) == {"w2"}
    assert kept_fp16(model, {"mm1", "head", "wide"}, 2000) == set()
    assert kept_fp16(model, {"mm1", "head", "wide"}, 200_000) == {"w2", "w3"}
    assert kept_fp16(model, set(), 200_000) == set()


def test_the_room_is_what_stays_above_the_floor_and_at_most_a_64th_of_the_file() -> None:
    # 3.5x of 7,000,000 bytes is 2,000,000: a 1,990,000-byte file has 10,000 bytes of room
    assert kept_room(7_000_000, 1_990_000) == pytest.approx(10_000)
    # a 1,600,000-byte file has 400,000 above the floor, but grows by at most 25,000
    assert kept_room(7_000_000, 1_600_000) == pytest.approx(25_000)
    assert kept_room(7_000_000, 2_100_000) < 0  # already under the floor: none
