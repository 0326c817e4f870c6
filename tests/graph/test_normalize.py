"""normalize: models as exporters write them (Constant-node weights, constant sub-graphs, unused
opset imports) read as quanta's passes expect them.

Oracle parity: outputs before and after in ONNX Runtime (float32 in both, folded by
``onnx.reference`` in numpy float32: equal to 1e-6); structural: op counts, initializers, imports
and quantized sizes after the pass.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx.reference
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_graphs import OPSET, rand

from quanta.errors import ModelError
from quanta.graph import CalibrationData, QuantizeConfig, load_model, prepare, quantize_static
from quanta.graph.normalize import FOLD_MAX_BYTES, normalize
from quanta.runtime import make_session


def ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return make_session(model.SerializeToString()).run(None, {"x": x})


def images(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, 3, 8, 8)).astype(np.float32)


def constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"{name}_const",
                            value=numpy_helper.from_array(value, name))  # fmt: skip


def model_of(
    nodes: list[onnx.NodeProto],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    x: list[int | str] | None = None,
    y: list[int | str] | None = None,
    opsets: dict[str, int] | None = None,
    extra_outputs: dict[str, list[int]] | None = None,
) -> onnx.ModelProto:
    outputs = {"y": y or ["N", 3, 8, 8], **(extra_outputs or {})}
    graph = helper.make_graph(
        nodes,
        "normalize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x or ["N", 3, 8, 8])],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()],
    )  # fmt: skip
    imports = [helper.make_opsetid(d, v) for d, v in {"": OPSET, **(opsets or {})}.items()]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def conv_gemm(*, as_constants: bool) -> onnx.ModelProto:
    """x (N, 3, 8, 8) -> Conv 3x3 (64) -> Relu -> Flatten -> Gemm (100): 245 KB of weights."""
    weights = {
        "conv.w": rand(64, 3, 3, 3, seed=1),
        "conv.b": rand(64, seed=2, std=0.1),
        "fc.w": rand(100, 64 * 36, seed=3, std=0.05),
        "fc.b": rand(100, seed=4, std=0.1),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    if as_constants:  # as Paddle2ONNX writes them
        return model_of([*(constant(k, v) for k, v in weights.items()), *nodes], y=["N", 100])
    return model_of(nodes, weights, y=["N", 100])


# --- Constant nodes -> initializers ----------------------------------------------------------


def test_constant_weights_quantize_smaller_than_float_with_the_initializer_plan(
    tmp_path: Path,
) -> None:
    as_nodes, as_inits = conv_gemm(as_constants=True), conv_gemm(as_constants=False)
    data = CalibrationData({"x": images(16)})
    config = QuantizeConfig(min_fidelity=None)
    q_nodes = quantize_static(as_nodes, data, config).model
    q_inits = quantize_static(as_inits, data, config).model
    float_size = len(as_nodes.SerializeToString())
    # weight-dominated: int8 weights are a quarter of float, and no float copy is left
    assert float_size / len(q_nodes.SerializeToString()) >= 3.0
    assert ops(q_nodes) == ops(q_inits)
    assert "Constant" not in ops(q_nodes)
    a, b = inits(q_nodes), inits(q_inits)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_every_constant_attribute_form_becomes_an_initializer() -> None:
    nodes = [
        helper.make_node(
            "Constant",
            [],
            ["t"],
            value=numpy_helper.from_array(np.full((3, 1, 1), 2.0, np.float32), "ignored"),
        ),  # fmt: skip
        helper.make_node("Constant", [], ["f"], value_float=0.5),
        helper.make_node("Constant", [], ["fs"], value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Constant", [], ["i"], value_int=1),
        helper.make_node("Constant", [], ["is"], value_ints=[1, 2]),
        helper.make_node("Mul", ["x", "t"], ["a"]),
        helper.make_node("Mul", ["a", "f"], ["b"]),
        helper.make_node("Unsqueeze", ["fs", "is"], ["fs4"]),  # (1, 1, 1, 3)... after axes 1, 2
        helper.make_node("Add", ["b", "fs4"], ["c"]),
        helper.make_node("Cast", ["i"], ["i_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["c", "i_f"], ["y"]),
    ]
    model = model_of(nodes, x=["N", 3, 1, 3], y=["N", 3, 1, 3])
    out = normalize(model, fold=False)
    assert "Constant" not in ops(out)
    got = inits(out)
    assert got["f"].dtype == np.float32 and got["f"].shape == ()
    np.testing.assert_array_equal(got["fs"], [1.0, 2.0, 3.0])
    assert got["i"].dtype == np.int64 and got["is"].tolist() == [1, 2]
    np.testing.assert_array_equal(got["t"], np.full((3, 1, 1), 2.0, np.float32))
    x = np.random.default_rng(0).normal(size=(2, 3, 1, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(out, x)[0], run(model, x)[0])


def test_a_constant_that_is_a_graph_output_stays_a_node() -> None:
    model = model_of(
        [constant("k", np.ones(2, np.float32)), helper.make_node("Relu", ["x"], ["y"])],
        extra_outputs={"k": [2]},
    )
    assert ops(normalize(model))["Constant"] == 1


# --- constant folding ------------------------------------------------------------------------


def transposed_weight_model() -> onnx.ModelProto:
    """Gemm reads Transpose(w) * 0.5 (w a Constant node), as some exporters write a Linear."""
    return model_of(
        [
            constant("w", rand(64 * 3, 10, seed=5)),
            helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
            helper.make_node("Mul", ["wt", "half"], ["w_half"]),
            helper.make_node("Flatten", ["x"], ["f"]),
            helper.make_node("Gemm", ["f", "w_half"], ["y"], transB=1),
        ],
        {"half": np.array(0.5, np.float32)},
        y=["N", 10],
    )


def test_a_transposed_constant_weight_is_folded_into_one_initializer() -> None:
    model = transposed_weight_model()
    out = normalize(model)
    assert ops(out) == Counter({"Flatten": 1, "Gemm": 1})
    (gemm,) = [n for n in out.graph.node if n.op_type == "Gemm"]
    got = inits(out)
    assert set(got) == {"w_half"}  # the float source and the scalar are gone
    w = numpy_helper.to_array(model.graph.node[0].attribute[0].t)
    np.testing.assert_array_equal(got[gemm.input[1]], w.T * np.float32(0.5))
    x = images(4)
    np.testing.assert_allclose(run(out, x)[0], run(model, x)[0], rtol=0, atol=1e-6)


def test_the_planner_quantizes_a_folded_weight() -> None:
    result = quantize_static(
        transposed_weight_model(), CalibrationData({"x": images(8)}),
        QuantizeConfig(min_fidelity=None),
    )  # fmt: skip
    assert not result.float_nodes
    q = inits(result.model)
    # one int8 weight, and no float copy of it
    assert [v.shape for v in q.values() if v.dtype == np.int8 and v.size > 10] == [(10, 192)]
    assert not [k for k, v in q.items() if v.dtype == np.float32 and v.size >= 192]


def test_shape_arithmetic_on_constants_is_folded() -> None:
    model = model_of(
        [
            helper.make_node("Shape", ["proto"], ["s"]),  # [2, 96]
            helper.make_node("Gather", ["s", "one"], ["last"], axis=0),  # 96
            helper.make_node("Concat", ["minus_one", "last"], ["shape"], axis=0),  # [-1, 96]
            helper.make_node("Reshape", ["x", "shape"], ["y"]),
        ],
        {
            "proto": np.zeros((2, 96), np.float32),
            "one": np.array([1], np.int64),
            "minus_one": np.array([-1], np.int64),
        },  # fmt: skip
        y=[None, 96],
    )
    out = normalize(model)
    assert ops(out) == Counter({"Reshape": 1})
    assert inits(out)["shape"].tolist() == [-1, 96]


def test_a_blow_up_is_not_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    # ConstantOfShape of 25M float32 zeros: 100 MB from an 8-byte shape
    model = model_of(
        [
            helper.make_node(
                "ConstantOfShape",
                ["n"],
                ["big"],
                value=numpy_helper.from_array(np.zeros(1, np.float32)),
            ),
            helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
            helper.make_node("Add", ["x", "s"], ["y"]),
        ],  # fmt: skip
        {"n": np.array([25_000_000], np.int64)},
        y=["N", 3, 8, 8],
    )
    evaluated: list[str] = []
    evaluator = onnx.reference.ReferenceEvaluator

    class Spy(evaluator):  # type: ignore[misc, valid-type]
        def __init__(self, proto: onnx.ModelProto) -> None:
            evaluated.extend(n.op_type for n in proto.graph.node)
            super().__init__(proto)

    monkeypatch.setattr(onnx.reference, "ReferenceEvaluator", Spy)
    out = normalize(model)
    assert ops(out) == ops(model)
    assert sum(t.ByteSize() for t in out.graph.initializer) < 100
    assert "ConstantOfShape" not in evaluated  # sized by shape inference, never computed
    # the cap: a small growth is folded
    small = np.array([FOLD_MAX_BYTES // 4], np.int64)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(small, "n"))
    assert ops(normalize(model)) == Counter({"Add": 1})


def test_random_and_quantize_ops_are_not_folded() -> None:
    model = model_of(
        [
            helper.make_node("RandomUniform", [], ["r"], shape=[3, 1, 1]),
            helper.make_node("QuantizeLinear", ["w", "s"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s"], ["dq"]),
            helper.make_node("Add", ["x", "r"], ["a"]),
            helper.make_node("Mul", ["a", "dq"], ["y"]),
        ],
        {"w": np.ones((3, 1, 1), np.float32), "s": np.array(0.1, np.float32)},
    )
    assert ops(normalize(model)) == ops(model)


def test_nodes_with_a_subgraph_are_left_alone() -> None:
    then_branch = helper.make_graph(
        [constant("kt", np.ones(1, np.float32))], "then", [],
        [helper.make_tensor_value_info("kt", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["k"], ["ke"])], "else", [],
        [helper.make_tensor_value_info("ke", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = model_of(
        [
            helper.make_node(
                "If", ["cond"], ["picked"], then_branch=then_branch, else_branch=else_branch
            ),
            helper.make_node("Neg", ["k"], ["k_neg"]),  # folded
            helper.make_node("Add", ["x", "picked"], ["a"]),
            helper.make_node("Add", ["a", "k_neg"], ["y"]),
        ],  # fmt: skip
        {"cond": np.array(True), "k": np.ones(1, np.float32)},
    )
    out = normalize(model)
    assert ops(out) == Counter({"If": 1, "Add": 2})
    assert "k" in inits(out)  # still read from inside a branch
    x = images(2)
    np.testing.assert_array_equal(run(out, x)[0], run(model, x)[0])
    # even an If whose branches read nothing from outside stays a node
    (branch,) = [a for a in model.graph.node[0].attribute if a.name == "else_branch"]
    branch.g.CopyFrom(then_branch)
    assert ops(normalize(model))["If"] == 1


def test_a_constant_graph_output_keeps_its_node() -> None:
    model = model_of(
        [
            helper.make_node("Neg", ["k"], ["z"]),
            helper.make_node("Relu", ["x"], ["y"]),
        ],
        {"k": np.ones(2, np.float32)},
        extra_outputs={"z": [2]},
    )
    out = normalize(model)
    assert ops(out) == ops(model)
    x = images(2)
    for a, b in zip(run(out, x), run(model, x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_outputs_are_unchanged_by_normalization() -> None:
    for model in (conv_gemm(as_constants=True), transposed_weight_model()):
        x = images(4, seed=3)
        out = normalize(model)
        assert "Constant" not in ops(out)
        np.testing.assert_allclose(run(out, x)[0], run(model, x)[0], rtol=0, atol=1e-5)


def test_a_model_with_nothing_to_do_is_byte_identical() -> None:
    model = conv_gemm(as_constants=False)
    assert normalize(model).SerializeToString() == model.SerializeToString()


def test_the_callers_model_is_not_modified() -> None:
    model = transposed_weight_model()
    before = model.SerializeToString()
    normalize(model)
    prepare(model)
    assert model.SerializeToString() == before


# --- opset imports ---------------------------------------------------------------------------


def test_an_unused_domain_import_is_accepted_and_dropped(tmp_path: Path) -> None:
    model = model_of([helper.make_node("Relu", ["x"], ["y"])], opsets={"Paddle": 1})
    path = tmp_path / "paddle.onnx"
    onnx.save_model(model, path)
    make_session(path.read_bytes())  # the oracle: ONNX Runtime runs it
    loaded = load_model(path)
    assert [o.domain for o in loaded.opset_import] == [""]


def test_a_used_unknown_domain_is_refused_in_one_line(tmp_path: Path) -> None:
    model = model_of(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("pool2d", ["r"], ["y"], name="pool", domain="Paddle")],
        opsets={"Paddle": 1},
    )  # fmt: skip
    path = tmp_path / "paddle.onnx"
    onnx.save_model(model, path)
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert "'pool'" in message and "Paddle::pool2d" in message


def test_a_domain_used_only_inside_a_subgraph_is_kept() -> None:
    branch = helper.make_graph(
        [helper.make_node("LabelEncoder", ["x"], ["e"], domain="ai.onnx.ml",
                          keys_floats=[0.0], values_floats=[1.0])],
        "branch", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )  # fmt: skip
    model = model_of(
        [helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)],
        {"cond": np.array(True)},
        opsets={"ai.onnx.ml": 4, "Paddle": 1},
    )
    assert {o.domain for o in normalize(model).opset_import} == {"", "ai.onnx.ml"}


def test_a_function_domain_counts_as_used_where_a_node_calls_it() -> None:
    # Double (domain "outer") calls Twice (domain "inner"): "inner" is used only in a function
    twice = helper.make_function(
        "inner", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
        [helper.make_opsetid("", OPSET)],
    )  # fmt: skip
    double = helper.make_function(
        "outer", "Double", ["a"], ["b"], [helper.make_node("Twice", ["a"], ["b"], domain="inner")],
        [helper.make_opsetid("", OPSET), helper.make_opsetid("inner", 1)],
    )  # fmt: skip
    model = model_of([helper.make_node("Double", ["x"], ["y"], domain="outer")],
                     opsets={"outer": 1, "inner": 1, "unused": 1})  # fmt: skip
    model.functions.extend([double, twice])
    out = normalize(model)
    assert {o.domain for o in out.opset_import} == {"", "outer", "inner"}
    x = images(2)
    np.testing.assert_array_equal(run(out, x)[0], 2 * x)
