"""Ops real models are made of (issue 14): SiLU in int8, PRelu and ConvTranspose float with int8
neighbours, each checked against ONNX Runtime's float model and the kernels it really runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.ops.hard_swish import int8_hard_swish
from quanta.runtime import count_kernels, run_model

# uint8 activations: ONNX Runtime converts int8 Q/DQ pairs to uint8 only where a quantized tensor
# has one reader, and SiLU's input has two (Sigmoid and Mul); "auto" picks uint8 for this reason.
CONFIG = QuantizeConfig(min_fidelity=None, method="minmax", activation_type="uint8")
X = np.random.default_rng(7).normal(0, 1, (48, 3, 10, 10)).astype(np.float32)


def _conv_act_conv(act: list[onnx.NodeProto], extra: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Conv 3->16 -> ``act`` (reads h, writes a) -> Conv 16->8 -> y."""
    inits = {"w1": rand(16, 3, 3, 3, seed=1), "b1": rand(16, seed=2, std=0.1)}
    inits |= {"w2": rand(8, 16, 3, 3, seed=3, std=0.2), "b2": rand(8, seed=4, std=0.1), **extra}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", pads=[1] * 4),
        *act,
        helper.make_node("Conv", ["a", "w2", "b2"], ["y"], name="conv2", pads=[1] * 4),
    ]
    return make_model(nodes, {"x": ["N", 3, 10, 10]}, {"y": ["N", 8, 10, 10]}, inits)


def _quantize(model: onnx.ModelProto, tmp_path: Path) -> tuple[onnx.ModelProto, Path, list]:
    result = quantize_static(model, CalibrationData({"x": X[:32]}), CONFIG)
    path = tmp_path / "q.onnx"
    onnx.save(result.model, path)
    return result.model, path, result.float_nodes


def _relative_error(q: onnx.ModelProto, f: onnx.ModelProto) -> float:
    want, got = run_model(f, {"x": X[32:]})[0], run_model(q, {"x": X[32:]})[0]
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_silu_runs_as_int8_sigmoid_and_mul(tmp_path: Path) -> None:
    silu = [
        helper.make_node("Sigmoid", ["h"], ["s"], name="sig"),
        helper.make_node("Mul", ["h", "s"], ["a"], name="mul"),
    ]
    model = _conv_act_conv(silu, {})
    q, path, float_nodes = _quantize(model, tmp_path)
    assert float_nodes == []  # the gate is planned, not kept float
    int8 = count_kernels(path).int8
    assert (int8["QLinearConv"], int8["QLinearSigmoid"], int8["QLinearMul"]) == (2, 1, 1)
    assert "Sigmoid" not in count_kernels(path).all  # no float Sigmoid left
    assert _relative_error(q, model) < 0.05  # a few output steps of 8-bit grids


def test_final_sigmoid_stays_float(tmp_path: Path) -> None:
    model = _conv_act_conv([helper.make_node("Relu", ["h"], ["a"], name="relu")], {})
    model.graph.node.append(helper.make_node("Sigmoid", ["y"], ["p"], name="head"))
    model.graph.output[0].name = "p"
    _, path, float_nodes = _quantize(model, tmp_path)
    assert [(f.name, f.kind.value) for f in float_nodes] == [("head", "unread")]
    assert count_kernels(path).all["Sigmoid"] == 1


def test_prelu_stays_float_between_int8_convs(tmp_path: Path) -> None:
    slope = np.random.default_rng(5).uniform(0, 0.3, (16, 1, 1))
    prelu = [helper.make_node("PRelu", ["h", "slope"], ["a"], name="prelu")]
    model = _conv_act_conv(prelu, {"slope": slope})
    q, path, float_nodes = _quantize(model, tmp_path)
    assert [(f.name, f.kind.value) for f in float_nodes] == [("prelu", "by_design")]
    assert "no int8 kernel in ONNX Runtime" in float_nodes[0].reason
    counts = count_kernels(path)
    assert counts.int8["QLinearConv"] == 2 and counts.all["PRelu"] == 1
    assert _relative_error(q, model) < 0.05


def test_conv_transpose_computes_float_on_an_int8_weight(tmp_path: Path) -> None:
    # Conv 3->16 -> ConvTranspose 16->32, 2x2 stride 2: weight (C_in, C_out, kH, kW), 2048 values
    inits = {"w1": rand(16, 3, 3, 3, seed=1), "wt": rand(16, 32, 2, 2, seed=6, std=0.2)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("ConvTranspose", ["r", "wt"], ["y"], name="up", strides=[2, 2]),
    ]
    model = make_model(nodes, {"x": ["N", 3, 10, 10]}, {"y": ["N", 32, 20, 20]}, inits)
    q, path, float_nodes = _quantize(model, tmp_path)
    assert [(f.name, f.kind.value) for f in float_nodes] == [("up", "by_design")]
    int8_inits = {t.name: t for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    assert any(t.dims == [16, 32, 2, 2] for t in int8_inits.values())  # stored int8
    assert not any(t.name == "wt" for t in q.graph.initializer)  # the float copy is gone
    # one scale per output channel (axis 1), so each column is rounded on its own grid
    assert _relative_error(q, model) < 0.03
    assert count_kernels(path).all["ConvTranspose"] == 1


def test_hard_swish_runs_as_int8_add_and_mul(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _conv_act_conv([helper.make_node("HardSwish", ["h"], ["a"], name="hswish")], {})
    with monkeypatch.context() as m:  # the QDQ model as it was before the rewrite
        m.setattr("quanta.graph.static.int8_hard_swish", lambda q: 0)
        plain, path, float_nodes = _quantize(model, tmp_path)
    assert [f.name for f in float_nodes] == ["hswish"]  # the planner keeps it float
    assert count_kernels(path).all["HardSigmoid"] == 1  # ONNX Runtime: DQ, HardSigmoid, Mul, Q
    before = run_model(plain, {"x": X[32:]})[0]
    assert int8_hard_swish(plain) == 1  # what quantize_static does on uint8 activations
    (tmp_path / "q").mkdir()
    q, path, _ = _quantize(model, tmp_path / "q")
    # the same graph and numbers; quantize_static rewrites before compact names it, so the
    # rewrite's own nodes got short names there and long ones here
    assert [n.op_type for n in q.graph.node] == [n.op_type for n in plain.graph.node]
    np.testing.assert_array_equal(
        run_model(q, {"x": X[32:]})[0], run_model(plain, {"x": X[32:]})[0]
    )
    counts = count_kernels(path)
    assert (counts.int8["QLinearConv"], counts.int8["QLinearAdd"], counts.int8["QLinearMul"]) == (
        2,
        1,
        1,
    )
    assert "HardSigmoid" not in counts.all and "HardSwish" not in counts.all
    # the gate is rounded to 1/255, which moves HardSwish by at most |x|/510: within a few
    # output steps of the QDQ model that ran HardSwish in float, and close to float itself
    after = run_model(q, {"x": X[32:]})[0]
    step = float(np.ptp(before)) / 255
    assert np.abs(after - before).max() <= 4 * step
    assert _relative_error(q, model) < 0.05


def test_hard_swish_gate_is_exact_on_its_grid() -> None:
    # DQ -> HardSwish -> Q alone, x on the uint8 grid (0.05, 128): every integer input
    grid = np.arange(256, dtype=np.uint8)
    nodes = [
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x"], name="dq"),
        helper.make_node("HardSwish", ["x"], ["h"], name="hswish"),
        helper.make_node("QuantizeLinear", ["h", "so", "zo"], ["hq"], name="q"),
        helper.make_node("DequantizeLinear", ["hq", "so", "zo"], ["y"], name="dq_out"),
    ]
    graph = helper.make_graph(
        nodes,
        "hswish",
        [helper.make_tensor_value_info("xq", onnx.TensorProto.UINT8, [256])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [256])],
        [
            onnx.numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            onnx.numpy_helper.from_array(np.array(128, np.uint8), "z"),
            onnx.numpy_helper.from_array(np.array(6.8 / 255, np.float32), "so"),
            onnx.numpy_helper.from_array(np.array(15, np.uint8), "zo"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert int8_hard_swish(model) == 1
    x = 0.05 * (grid.astype(np.float64) - 128)
    gate = np.clip(np.rint((x + 3) * 255 / 6), 0, 255) / 255  # rounding half to even, saturate
    want = np.clip(np.rint(x * gate / (6.8 / 255)) + 15, 0, 255)
    got_q = np.rint(run_model(model, {"xq": grid})[0] / (6.8 / 255)) + 15
    # ONNX Runtime's float arithmetic may land a product on the other side of a tie
    assert np.abs(got_q - want).max() <= 1 and np.mean(got_q == want) >= 0.95


def test_hard_swish_left_alone_with_int8_activations() -> None:
    model = _conv_act_conv([helper.make_node("HardSwish", ["h"], ["a"], name="hswish")], {})
    config = QuantizeConfig(min_fidelity=None, method="minmax", activation_type="int8")
    q = quantize_static(model, CalibrationData({"x": X[:32]}), config).model
    assert int8_hard_swish(q) == 0  # x read twice would stop ONNX Runtime's int8 -> uint8 pass
