"""fold_channel_affine: a per-channel Mul/Div/Add/Sub of constants after a Conv folds into it.

Oracle parity: the folded graph gives the original's outputs in ONNX Runtime (float32, within
1e-5); structural: the op counts and initializers after the pass; and the static model of a
Conv -> Mul -> Add -> Relu -> Conv graph (the pattern captcha_crnn's exporter writes) has no
float Mul or Add left between its int8 convolutions.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_graphs import make_model

from quanta.graph import prepare
from quanta.graph.calibrate import CalibrationData
from quanta.graph.config import QuantizeConfig
from quanta.graph.fold_affine import fold_channel_affine
from quanta.graph.static import quantize_static
from quanta.runtime import make_session


def affine_model(
    steps: list[tuple[str, tuple[int, ...]]], *, bias: bool = True, reversed_operands: bool = False
) -> onnx.ModelProto:
    """x (N, 3, 6, 6) -> Conv 3x3 (4 channels) -> each (op, constant shape) in turn -> y."""
    rng = np.random.default_rng(3)
    inits: dict[str, np.ndarray] = {"w": rng.normal(0.0, 0.5, (4, 3, 3, 3))}
    conv_inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.normal(0.0, 0.5, 4)
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["t0"], name="conv", kernel_shape=[3, 3])]
    for k, (op, shape) in enumerate(steps):
        inits[f"k{k}"] = np.asarray(rng.uniform(0.5, 2.0, shape))
        operands = [f"k{k}", f"t{k}"] if reversed_operands else [f"t{k}", f"k{k}"]
        nodes.append(helper.make_node(op, operands, [f"t{k + 1}"], name=f"{op}{k}"))
    nodes[-1].output[0] = "y"
    return make_model(nodes, {"x": ["N", 3, 6, 6]}, {"y": ["N", 4, 4, 4]}, inits, "affine")


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {"x": x})[0]


def folded(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy, fold_channel_affine(copy)


X = np.random.default_rng(0).normal(0.0, 1.0, (2, 3, 6, 6)).astype(np.float32)


@pytest.mark.parametrize(
    "steps",
    [
        [("Mul", (4, 1, 1)), ("Add", (4, 1, 1))],  # BatchNormalization as an exporter writes it
        [("Mul", (1, 4, 1, 1)), ("Sub", (1, 4, 1, 1))],
        [("Div", (4, 1, 1))],
        [("Add", (1,)), ("Mul", ())],  # one value for every channel
    ],
    ids=["mul_add", "mul_sub_rank4", "div", "scalars"],
)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_fold_matches_the_unfolded_graph(steps: list[tuple[str, tuple[int, ...]]], bias: bool):
    model = affine_model(steps, bias=bias)
    out, count = folded(model)
    assert count == len(steps)
    assert Counter(n.op_type for n in out.graph.node) == {"Conv": 1}
    assert out.graph.node[0].output[0] == "y"
    assert {i.name for i in out.graph.initializer} == set(out.graph.node[0].input[1:])
    onnx.checker.check_model(out, full_check=True)
    np.testing.assert_allclose(run(out, X), run(model, X), atol=1e-5)


@pytest.mark.parametrize(
    ("steps", "reversed_operands"),
    [
        ([("Mul", (4, 4, 1))], False),  # varies along the height, not one value per channel
        ([("Add", (1, 1, 1, 4))], False),  # per column
        ([("Sub", (4, 1, 1))], True),  # k - conv(x): the Conv's weight would change sign only
        ([("Div", (4, 1, 1))], True),  # k / conv(x): not affine
    ],
    ids=["spatial", "per_column", "constant_minus_conv", "constant_over_conv"],
)
def test_what_is_not_per_channel_affine_stays(
    steps: list[tuple[str, tuple[int, ...]]], reversed_operands: bool
) -> None:
    model = affine_model(steps, reversed_operands=reversed_operands)
    out, count = folded(model)
    assert count == 0
    assert out.SerializeToString() == model.SerializeToString()


def test_a_conv_read_twice_is_not_folded() -> None:
    model = affine_model([("Mul", (4, 1, 1))])
    model.graph.node.append(helper.make_node("Relu", ["t0"], ["z"], name="relu"))
    model.graph.output.append(helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None))
    out, count = folded(model)
    assert count == 0
    assert out.SerializeToString() == model.SerializeToString()


def test_static_keeps_no_float_scale_between_int8_convolutions() -> None:
    rng = np.random.default_rng(5)
    model = affine_model([("Mul", (4, 1, 1)), ("Add", (4, 1, 1))])
    model.graph.node[-1].output[0] = "bn"
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(rng.normal(0.0, 0.5, (4, 4, 1, 1)).astype(np.float32), "w2")
    )
    model.graph.node.extend(
        [
            helper.make_node("Relu", ["bn"], ["r"], name="relu"),
            helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
        ]
    )
    assert Counter(n.op_type for n in prepare(model).graph.node) == {"Conv": 2, "Relu": 1}
    data = rng.normal(0.0, 1.0, (64, 3, 6, 6)).astype(np.float32)
    result = quantize_static(
        model, CalibrationData({"x": data}), QuantizeConfig(latency_check=False)
    )
    graph = result.model.graph
    constants = {i.name for i in graph.initializer}
    # only the bias scales' Mul(input scale, weight scale) of compact QDQ remain: no Mul or Add
    # reads an activation
    arithmetic = [n for n in graph.node if n.op_type in ("Mul", "Add")]
    assert all(set(n.input) <= constants for n in arithmetic)
    ops = Counter(n.op_type for n in graph.node)
    assert ops["Conv"] == 2 and ops["QuantizeLinear"] >= 2  # both convolutions int8
    x = data[:8]
    cosine = np.sum(run(result.model, x) * run(model, x)) / (
        np.linalg.norm(run(result.model, x)) * np.linalg.norm(run(model, x))
    )
    assert cosine > 0.99
