"""Compact QDQ on what a small exported model is made of: the same numbers, fewer bytes.

A Paddle2ONNX-style graph: a Conv that spells out every default attribute, a HardSwish
written as ``x * Clip(x + 3, 0, 6) / 6`` twice with its own copy of each constant, and a
weight stored int8 and decoded by ``Cast -> Mul`` (as ``graph/weight_only.py`` writes it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from tiny_graphs import OPSET, rand

from quanta.graph.compact import compact_qdq
from quanta.graph.lean import drop_default_attributes
from quanta.runtime import make_session


def _hard_swish(x: str, out: str, k: int) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Add", [x, f"three_{k}"], [f"{out}_a"], name=f"add_{k}"),
        helper.make_node(
            "Clip", [f"{out}_a", f"zero_{k}", f"six_{k}"], [f"{out}_c"], name=f"clip_{k}"
        ),
        helper.make_node("Mul", [x, f"{out}_c"], [f"{out}_m"], name=f"mul_{k}"),
        helper.make_node("Div", [f"{out}_m", f"six_div_{k}"], [out], name=f"div_{k}"),
    ]  # fmt: skip


def exported_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["y1"], name="conv1", kernel_shape=[3, 3],
            dilations=[1, 1], group=1, strides=[1, 1], pads=[1, 1, 1, 1],
        ),
        *_hard_swish("y1", "h1", 1),
        helper.make_node("Cast", ["w2_q"], ["w2_c"], name="w2_Cast", to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", ["w2_c", "w2_s"], ["w2_w"], name="w2_Mul"),
        helper.make_node(
            "Conv", ["h1", "w2_w"], ["y2"], name="conv2", kernel_shape=[3, 3],
            dilations=[1, 1], group=1, strides=[2, 2], pads=[0, 0, 0, 0],
        ),
        *_hard_swish("y2", "out", 2),
    ]  # fmt: skip
    inits: dict[str, np.ndarray] = {"w1": rand(4, 2, 3, 3, seed=1), "b1": rand(4, seed=2)}
    for k in (1, 2):
        inits |= {
            f"three_{k}": np.array(3.0),
            f"zero_{k}": np.array(0.0),
            f"six_{k}": np.array(6.0),
            f"six_div_{k}": np.array(6.0),
        }
    w2 = np.random.default_rng(3).integers(-127, 128, (3, 4, 3, 3)).astype(np.int8)
    scale = np.array([0.01, 0.02, 0.005], np.float32).reshape(3, 1, 1, 1)  # (C_out, 1, 1, 1)
    graph = helper.make_graph(
        nodes, "exported",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 7, 7])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 3, 3, 3])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()]
        + [numpy_helper.from_array(w2, "w2_q"), numpy_helper.from_array(scale, "w2_s")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def _attributes(model: onnx.ModelProto, name: str) -> dict[str, object]:
    node = next(n for n in model.graph.node if n.name == name)
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def test_compact_drops_defaults_shares_constants_and_keeps_every_number() -> None:
    model = exported_model()
    x = rand(1, 2, 7, 7, seed=4, std=3.0)  # reaches both of the Clip's bounds
    before_ort = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    before_ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    size = model.ByteSize()
    compact_qdq(model)
    onnx.checker.check_model(model, full_check=True)
    # the same arithmetic, bit for bit, in ONNX Runtime and in onnx.reference
    np.testing.assert_array_equal(
        make_session(model.SerializeToString()).run(None, {"x": x})[0], before_ort
    )
    np.testing.assert_array_equal(ReferenceEvaluator(model).run(None, {"x": x})[0], before_ref)
    assert model.ByteSize() < size
    # only attributes that say something stay
    assert _attributes(model, "conv1") == {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    assert _attributes(model, "conv2") == {"kernel_shape": [3, 3], "strides": [2, 2]}
    # one initializer per distinct scalar: 3, 0 and 6
    scalars = [numpy_helper.to_array(t) for t in model.graph.initializer if not t.dims]
    assert sorted(float(s) for s in scalars) == [0.0, 3.0, 6.0]
    # constants and the int8 weight's decoder get short names; the float model's nodes and
    # activations keep theirs
    consts = {t.name: t.data_type for t in model.graph.initializer}
    assert all(len(name) <= 3 and name[0] in "cqs" for name in consts), consts
    assert {name[0] for name, t in consts.items() if t == onnx.TensorProto.INT8} == {"q"}
    decoders = [n for n in model.graph.node if n.op_type == "Cast" or n.input[0].startswith("d")]
    assert len(decoders) == 2 and all(n.name.startswith("n") for n in decoders)
    names = {n.name for n in model.graph.node} - {n.name for n in decoders}
    assert names == {f"{op}_{k}" for op in ("add", "clip", "mul", "div") for k in (1, 2)} | {
        "conv1", "conv2"
    }  # fmt: skip
    assert {"y1", "h1", "y2"} <= {o for n in model.graph.node for o in n.output}


def test_attributes_that_differ_from_the_default_stay() -> None:
    model = exported_model()
    conv1 = next(n for n in model.graph.node if n.name == "conv1")
    conv1.attribute.append(helper.make_attribute("auto_pad", "NOTSET"))
    # conv1: dilations, group, strides, auto_pad; conv2: dilations, group, pads
    assert drop_default_attributes(model) == 7
    # nothing left to drop the second time
    assert drop_default_attributes(model) == 0
    assert _attributes(model, "conv2")["strides"] == [2, 2]
