"""Graph passes run by prepare(): BatchNormalization folding and ReduceMean canonicalization.

Oracle parity: each rewritten graph gives the original's outputs in ONNX Runtime (float32, so
within 1e-5 absolute); structural: the op counts after the pass.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tiny_graphs import make_model as tiny_model

from quanta.graph import prepare
from quanta.graph.canonicalize import canonicalize
from quanta.graph.fold_bn import fold_batchnorm
from quanta.runtime import make_session

OPSET = 20


def make_model(
    nodes: list[onnx.NodeProto],
    outputs: dict[str, list[int | str]],
    inits: dict[str, np.ndarray],
    x_shape: list[int | str] | None = None,
) -> onnx.ModelProto:
    return tiny_model(nodes, {"x": x_shape or ["N", 3, 6, 6]}, outputs, inits, "passes")


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return make_session(model.SerializeToString()).run(None, {"x": x})


def ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (2, 3, 6, 6)).astype(np.float32)


# --- fold_batchnorm --------------------------------------------------------------------------


def conv_bn(*, bias: bool, extra_consumer: bool = False) -> onnx.ModelProto:
    """x (N, 3, 6, 6) -> Conv 3x3 (4 channels) -> BatchNormalization -> y [and Relu(conv) -> z]."""
    rng = np.random.default_rng(1)
    inits = {
        "w": rng.normal(0.0, 0.5, (4, 3, 3, 3)),
        "gamma": rng.uniform(0.5, 2.0, 4),
        "beta": rng.normal(0.0, 0.5, 4),
        "mean": rng.normal(0.0, 0.5, 4),
        "var": rng.uniform(0.2, 3.0, 4),
    }
    conv_inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.normal(0.0, 0.5, 4)
        conv_inputs.append("b")
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node(
            "BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], name="bn",
            epsilon=1e-3,
        ),
    ]  # fmt: skip
    outputs: dict[str, list[int | str]] = {"y": ["N", 4, 4, 4]}
    if extra_consumer:
        nodes.append(helper.make_node("Relu", ["c"], ["z"], name="relu"))
        outputs["z"] = ["N", 4, 4, 4]
    return make_model(nodes, outputs, inits)


@pytest.mark.parametrize("bias", [True, False], ids=["with_bias", "without_bias"])
def test_fold_batchnorm_matches_the_unfolded_graph(bias: bool) -> None:
    model = conv_bn(bias=bias)
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    assert fold_batchnorm(folded) == 1
    assert ops(folded) == {"Conv": 1}
    conv = folded.graph.node[0]
    assert conv.output[0] == "y" and len(conv.input) == 3  # a bias is added when there was none
    onnx.checker.check_model(folded, full_check=True)
    x = images()
    np.testing.assert_allclose(run(folded, x)[0], run(model, x)[0], atol=1e-5)


def test_prepare_folds_and_leaves_the_callers_model_alone() -> None:
    model = conv_bn(bias=True)
    before = model.SerializeToString()
    prepared = prepare(model)
    assert ops(prepared) == {"Conv": 1}
    assert model.SerializeToString() == before
    x = images(2)
    np.testing.assert_allclose(run(prepared, x)[0], run(model, x)[0], atol=1e-5)


def test_batchnorm_after_a_shared_conv_is_not_folded() -> None:
    # The Conv's output is also read by a Relu: folding would change what the Relu sees.
    model = conv_bn(bias=True, extra_consumer=True)
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    assert fold_batchnorm(folded) == 0
    assert ops(folded) == {"Conv": 1, "BatchNormalization": 1, "Relu": 1}
    assert folded.SerializeToString() == model.SerializeToString()


def test_fold_batchnorm_on_unnamed_nodes_keeps_the_conv() -> None:
    model = conv_bn(bias=True)
    for node in model.graph.node:
        node.name = ""
    assert fold_batchnorm(model) == 1
    assert ops(model) == {"Conv": 1}


def test_batchnorm_after_a_non_conv_is_not_folded() -> None:
    rng = np.random.default_rng(3)
    inits = {k: rng.uniform(0.5, 1.5, 3) for k in ("gamma", "beta", "mean", "var")}
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node(
                "BatchNormalization", ["r", "gamma", "beta", "mean", "var"], ["y"], name="bn"
            ),
        ],
        {"y": ["N", 3, 6, 6]},
        inits,
    )
    assert fold_batchnorm(model) == 0
    assert ops(model)["BatchNormalization"] == 1


# --- canonicalize: ReduceMean over H, W -> GlobalAveragePool ---------------------------------


def reduce_mean(
    axes: list[int], keepdims: int, *, as_constant_node: bool = False
) -> onnx.ModelProto:
    """x (N, 3, 6, 6) -> ReduceMean(axes, keepdims) -> y (axes as an input, as opset >= 18)."""
    axes_array = np.array(axes, np.int64)
    nodes = []
    inits: dict[str, np.ndarray] = {}
    if as_constant_node:
        nodes.append(
            helper.make_node(
                "Constant", [], ["axes"], name="axes", value=numpy_helper.from_array(axes_array)
            )
        )
    else:
        inits["axes"] = axes_array
    nodes.append(
        helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=keepdims)
    )
    return make_model(nodes, {"y": reduced_shape(["N", 3, 6, 6], axes, keepdims)}, inits)


def reduced_shape(shape: list[int | str], axes: list[int], keepdims: int) -> list[int | str]:
    axes = [a % len(shape) for a in axes]
    if keepdims:
        return [1 if i in axes else d for i, d in enumerate(shape)]
    return [d for i, d in enumerate(shape) if i not in axes]


# NOTE: canonicalize reads node.input[0] of every node before checking the op type, so a node
# without inputs (Constant) once raised IndexError, in prepare() too.


@pytest.mark.parametrize(
    ("axes", "as_constant_node"),
    [
        ([2, 3], False),
        ([3, 2], False),
        ([-2, -1], False),
        pytest.param([2, 3], True),
    ],
    ids=["axes_2_3", "axes_3_2", "negative_axes", "constant_node_axes"],
)
def test_spatial_reduce_mean_becomes_global_average_pool(
    axes: list[int], as_constant_node: bool
) -> None:
    model = reduce_mean(axes, keepdims=1, as_constant_node=as_constant_node)
    inferred = onnx.shape_inference.infer_shapes(model)
    assert canonicalize(inferred) == 1
    (pool,) = [n for n in inferred.graph.node if n.op_type != "Constant"]
    assert (pool.op_type, list(pool.input), list(pool.output)) == (
        "GlobalAveragePool",
        ["x"],
        ["y"],
    )
    assert pool.name == "mean"
    x = images(4)
    (want,), (got,) = run(model, x), run(inferred, x)
    assert got.shape == want.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_prepare_canonicalizes_the_spatial_mean() -> None:
    model = reduce_mean([2, 3], keepdims=1)
    prepared = prepare(model)
    assert ops(prepared)["GlobalAveragePool"] == 1 and ops(prepared)["ReduceMean"] == 0
    x = images(5)
    np.testing.assert_allclose(run(prepared, x)[0], run(model, x)[0], atol=1e-5)


@pytest.mark.parametrize(
    ("axes", "keepdims"),
    [([2, 3], 0), ([1], 1), ([1, 2, 3], 1), ([2], 1)],
    ids=["keepdims_0", "channel_axis", "three_axes", "one_spatial_axis"],
)
def test_other_reduce_means_are_left_alone(axes: list[int], keepdims: int) -> None:
    inferred = onnx.shape_inference.infer_shapes(reduce_mean(axes, keepdims=keepdims))
    assert canonicalize(inferred) == 0
    assert ops(inferred) == {"ReduceMean": 1}


def test_reduce_mean_on_a_3d_tensor_is_left_alone() -> None:
    model = make_model(
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=1)],
        {"y": ["N", 1, 1]},
        {"axes": np.array([1, 2], np.int64)},
        x_shape=["N", 4, 5],
    )
    inferred = onnx.shape_inference.infer_shapes(model)
    assert canonicalize(inferred) == 0


def test_reduce_mean_without_shape_information_is_left_alone() -> None:
    # canonicalize needs the input's rank; without shape inference it changes nothing.
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("ReduceMean", ["r", "axes"], ["y"], name="mean", keepdims=1),
        ],
        {"y": ["N", 3, 1, 1]},
        {"axes": np.array([2, 3], np.int64)},
    )
    assert canonicalize(model) == 0


def test_prepare_accepts_a_model_with_a_constant_node() -> None:
    # x + Constant(1.0): any exported model with a Constant node goes through this path.
    one = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32))
    model = make_model(
        [
            helper.make_node("Constant", [], ["one"], name="one", value=one),
            helper.make_node("Add", ["x", "one"], ["y"], name="add"),
        ],
        {"y": ["N", 3, 6, 6]},
        {},
    )
    prepared = prepare(model)
    # the Constant is now an initializer (quanta.graph.normalize), as the planner reads weights
    assert ops(prepared) == {"Add": 1}
    assert [t.name for t in prepared.graph.initializer] == ["one"]
    np.testing.assert_array_equal(run(prepared, images())[0], run(model, images())[0])
