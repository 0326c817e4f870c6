"""Op handlers: Relu/Clip fusion, Add/GlobalAveragePool/Concat planning, and which integer
kernels ONNX Runtime builds from the QDQ graph (structural tests)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, prepare, quantize_static, save_model
from quanta.graph.index import GraphIndex
from quanta.graph.ops import MAX_RANGE_RATIO, fusable_activation
from quanta.graph.planner import plan_static
from quanta.graph.static import mismatched_concats
from quanta.quant import MinMaxObserver
from quanta.runtime import KernelCounts, count_kernels, make_session

QMIN = {"int8": -128, "uint8": 0}


def config(activation_type: str = "int8") -> QuantizeConfig:
    return QuantizeConfig(method="minmax", activation_type=activation_type, min_fidelity=None)  # type: ignore[arg-type]


def quantize(model: onnx.ModelProto, feeds: dict[str, np.ndarray], activation_type: str = "int8"):  # type: ignore[no-untyped-def]
    return quantize_static(model, CalibrationData(feeds), config(activation_type))


def kernels(model: onnx.ModelProto, tmp_path: Path) -> KernelCounts:
    path = tmp_path / "q.onnx"
    save_model(model, path)
    return count_kernels(path)


def ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


# --- Relu / Clip fusion ----------------------------------------------------------------------


def conv_clip(lo: float | None, hi: float | None) -> onnx.ModelProto:
    """x (N, 2, 6, 6) -> Conv 3x3 -> c -> Clip(lo, hi) -> y; None leaves a bound out."""
    inits = {"w": rand(4, 2, 3, 3, seed=0, std=2.0), "b": rand(4, seed=1)}
    clip_inputs = ["c", "", ""]
    for k, (name, value) in enumerate((("lo", lo), ("hi", hi)), start=1):
        if value is not None:
            inits[name] = np.array(value)
            clip_inputs[k] = name
    while clip_inputs[-1] == "":
        clip_inputs.pop()
    return make_model(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3]),
            helper.make_node("Clip", clip_inputs, ["y"], name="clip"),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 4, 4, 4]},
        inits,
    )


def images(n: int = 16, seed: int = 2) -> np.ndarray:
    return rand(n, 2, 6, 6, seed=seed, std=1.0)


@pytest.mark.parametrize("activation_type", ["int8", "uint8"])
def test_conv_relu6_is_fused_with_zero_point_at_qmin(activation_type: str) -> None:
    model = conv_clip(0.0, 6.0)
    q = quantize(model, {"x": images()}, activation_type).model
    assert ops(q)["Clip"] == 0
    (quant,) = [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] != "x"]
    scale, zero_point = consts(q)[quant.input[1]], consts(q)[quant.input[2]]
    # The Clip's output range starts at 0: the zero point sits at qmin, negatives saturate to 0.
    assert zero_point.dtype == np.dtype(activation_type)
    assert int(zero_point) == QMIN[activation_type]
    # The calibration saturated at 6, so the top of the grid is 6 (one scale = 6 / 255).
    assert float(scale) == pytest.approx(6.0 / 255.0, rel=1e-6)
    # Saturation clamps as the Clip did. On the calibration images (no input saturation) the
    # values agree with float within the worst input rounding carried through the conv
    # (sum |w| * s_in / 2 per output channel) plus two output steps (output and weight rounding).
    x = images()
    got = make_session(q.SerializeToString()).run(None, {"x": x})[0]
    want = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    assert got.min() >= 0.0 and got.max() <= 6.0 + 1e-6
    (quant_x,) = [n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x"]
    s_in = float(consts(q)[quant_x.input[1]])
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w"))
    tolerance = np.abs(w).reshape(len(w), -1).sum(axis=1).max() * s_in / 2 + 2 * float(scale)
    assert np.abs(got - want).max() <= tolerance


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(0.0, 6.0), (-1.0, 1.0), (0.0, None), (None, 6.0), (None, None), (-2.0, 0.0)],
    ids=["relu6", "symmetric", "min_only", "max_only", "no_bounds", "max_zero"],
)
def test_clip_containing_zero_is_fused(lo: float | None, hi: float | None) -> None:
    prepared = prepare(conv_clip(lo, hi))
    clip = fusable_activation(prepared.graph.node[0], GraphIndex(prepared))
    assert clip is not None and clip.name == "clip"
    plan = plan_static(prepared)
    assert plan.fused == {"conv": "clip"}
    assert plan.source["y"] == "y"  # calibrated on the Clip's output


@pytest.mark.parametrize(("lo", "hi"), [(1.0, 6.0), (-6.0, -1.0)], ids=["above_0", "below_0"])
def test_clip_excluding_zero_is_not_fused(lo: float, hi: float) -> None:
    prepared = prepare(conv_clip(lo, hi))
    assert fusable_activation(prepared.graph.node[0], GraphIndex(prepared)) is None
    plan = plan_static(prepared)
    assert plan.fused == {}
    q = quantize(conv_clip(lo, hi), {"x": images()}).model
    assert ops(q)["Clip"] == 1


def test_clip_with_a_computed_bound_is_not_fused() -> None:
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
            helper.make_node("ReduceMax", ["c"], ["m"], name="max", keepdims=0),
            helper.make_node("Clip", ["c", "", "m"], ["y"], name="clip"),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 4, 4, 4]},
        {"w": rand(4, 2, 3, 3, seed=0)},
    )
    prepared = prepare(model)
    assert plan_static(prepared).fused == {}


def test_clip_after_a_shared_output_is_not_fused() -> None:
    # The Conv's output is also a graph output: the Clip is not its only consumer.
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
            helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="clip"),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 4, 4, 4], "c": ["N", 4, 4, 4]},
        {"w": rand(4, 2, 3, 3, seed=0), "lo": np.array(0.0), "hi": np.array(6.0)},
    )
    assert plan_static(prepare(model)).fused == {}


# --- Add: QLinearAdd -------------------------------------------------------------------------


def residual_block() -> onnx.ModelProto:
    """x -> Conv 1x1 a, x -> Conv 1x1 b; Add(a, b) -> Conv 3x3 -> y (x read by two Convs)."""
    return make_model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_a", kernel_shape=[1, 1]),
            helper.make_node("Conv", ["x", "w2"], ["b"], name="conv_b", kernel_shape=[1, 1]),
            helper.make_node("Add", ["a", "b"], ["s"], name="add"),
            helper.make_node("Conv", ["s", "w3"], ["y"], name="conv_out", kernel_shape=[3, 3]),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 3, 4, 4]},
        {"w1": rand(4, 2, 1, 1, seed=0), "w2": rand(4, 2, 1, 1, seed=1),
         "w3": rand(3, 4, 3, 3, seed=2)},
    )  # fmt: skip


def test_add_of_two_activations_becomes_qlinear_add(tmp_path: Path) -> None:
    result = quantize(residual_block(), {"x": images()}, "uint8")
    assert result.float_nodes == []
    counts = kernels(result.model, tmp_path)
    assert counts.int8["QLinearAdd"] == 1
    assert counts.all["Add"] == 0
    # with uint8, ONNX Runtime fuses the Convs that share their input too
    assert counts.int8["QLinearConv"] == 3 and counts.all["Conv"] == 0


def test_add_with_a_constant_operand_stays_float() -> None:
    model = make_model(
        [
            helper.make_node("Add", ["x", "shift"], ["s"], name="add"),
            helper.make_node("Conv", ["s", "w"], ["y"], name="conv", kernel_shape=[3, 3]),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 4, 4, 4]},
        {"shift": rand(1, 2, 1, 1, seed=4), "w": rand(4, 2, 3, 3, seed=0)},
    )
    plan = plan_static(prepare(model))
    (add,) = plan.float_nodes
    assert add.name == "add" and "constant" in add.reason
    assert set(plan.plans) == {"conv"}


# --- GlobalAveragePool: QLinearGlobalAveragePool ---------------------------------------------


def conv_gap_fc() -> onnx.ModelProto:
    """x -> Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y (N, 5)."""
    return make_model(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", kernel_shape=[3, 3]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
            helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
            helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 5]},
        {"w1": rand(4, 2, 3, 3, seed=0), "b1": rand(4, seed=1), "w2": rand(5, 4, seed=2),
         "b2": rand(5, seed=3)},
    )  # fmt: skip


@pytest.mark.parametrize("activation_type", ["int8", "uint8"])
def test_global_average_pool_after_conv_is_integer(activation_type: str, tmp_path: Path) -> None:
    result = quantize(conv_gap_fc(), {"x": images()}, activation_type)
    assert result.float_nodes == []
    counts = kernels(result.model, tmp_path)
    assert counts.int8["QLinearGlobalAveragePool"] == 1
    assert counts.all["GlobalAveragePool"] == 0
    assert counts.int8["QLinearConv"] == 1 and counts.int8["QGemm"] == 1


def test_global_average_pool_on_a_float_input_stays_float() -> None:
    # No int8 producer before it: requires_quantized_input leaves it float, silently.
    model = make_model(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
            helper.make_node("Conv", ["g", "w"], ["y"], name="conv", kernel_shape=[1, 1]),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 4, 1, 1]},
        {"w": rand(4, 2, 1, 1, seed=0)},
    )
    plan = plan_static(prepare(model))
    assert set(plan.plans) == {"conv"} and plan.float_nodes == []


# --- Concat: float when the inputs' ranges differ too much -----------------------------------


def concat_of(wide: float, narrow: float) -> onnx.ModelProto:
    """x -> Conv 1x1 (weights * wide) a, x -> Conv 1x1 (weights * narrow) b;
    Concat(a, b) -> Conv 3x3 -> y."""
    w = rand(3, 2, 1, 1, seed=0)
    return make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", kernel_shape=[1, 1]),
            helper.make_node("Conv", ["x", "wb"], ["b"], name="conv_b", kernel_shape=[1, 1]),
            helper.make_node("Concat", ["a", "b"], ["cat"], name="concat", axis=1),
            helper.make_node("Conv", ["cat", "w3"], ["y"], name="conv_out", kernel_shape=[3, 3]),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 4, 4, 4]},
        {"wa": w * wide, "wb": w * narrow, "w3": rand(4, 6, 3, 3, seed=1)},
    )


def test_concat_of_mismatched_ranges_stays_float() -> None:
    result = quantize(concat_of(100.0, 1.0), {"x": images()})
    (concat,) = [f for f in result.float_nodes if f.name == "concat"]
    assert concat.op_type == "Concat"
    # same weights scaled 100x: the widths differ exactly 100x
    assert "ranges differ 100x (limit 16x)" in concat.reason
    plan = plan_static(prepare(concat_of(100.0, 1.0)), exclude={"concat": concat.reason})
    assert "concat" not in plan.plans


def test_concat_kept_float_runs_float_in_onnx_runtime(tmp_path: Path) -> None:
    result = quantize(concat_of(100.0, 1.0), {"x": images()})
    assert "concat" in [f.name for f in result.float_nodes]
    counts = kernels(result.model, tmp_path)
    assert counts.int8["QLinearConcat"] == 0


def test_concat_of_similar_ranges_is_quantized() -> None:
    result = quantize(concat_of(2.0, 1.0), {"x": images()})
    assert result.float_nodes == []
    assert any(n.op_type == "QuantizeLinear" and n.input[0].startswith("cat")
               for n in result.model.graph.node)  # fmt: skip


def observed(lo: float, hi: float) -> MinMaxObserver:
    obs = MinMaxObserver()
    obs.update(np.array([lo, hi], np.float32))
    return obs


@pytest.mark.parametrize(
    ("a", "b", "kept_float"),
    [
        ((-1.0, 1.0), (0.0, 0.1), True),  # widths 2 and 0.1: 20x
        ((-1.0, 1.0), (0.0, 0.125), False),  # exactly 16x: the limit is exclusive
        ((-1.0, 1.0), (-0.5, 0.5), False),  # 2x
        ((-1.0, 1.0), (0.3, 0.3), True),  # zero width: nothing survives one shared scale
    ],
    ids=["20x", "16x", "2x", "zero_width"],
)
def test_mismatched_concats_golden(
    a: tuple[float, float], b: tuple[float, float], kept_float: bool
) -> None:
    prepared = prepare(concat_of(2.0, 1.0))
    plan = plan_static(prepared)
    assert "concat" in plan.plans
    ranges = {name: observed(-1.0, 1.0) for name in plan.calibrated_tensors()}
    ranges[plan.source["a"]], ranges[plan.source["b"]] = observed(*a), observed(*b)
    reasons = mismatched_concats(prepared, plan, ranges)
    assert ("concat" in reasons) == kept_float
    if kept_float and b[0] != b[1]:
        assert f"differ 20x (limit {MAX_RANGE_RATIO:.0f}x)" in reasons["concat"]
