"""A weight read by several nodes is stored once in int8, and quantizing never grows a model.

The graphs are what real exports look like: an unrolled recurrent layer reads one weight in
every step (captcha_crnn: 20 Gemm steps, one 6.5 MB weight), and Paddle2ONNX writes weights as
``Constant`` nodes instead of initializers.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.dynamic import quantize_dynamic
from quanta.graph.weight_only import compress_float_weights
from quanta.runtime import make_session

STEPS = 4
WIDTH = 128  # a (128, 128) weight: 64 KB float, 16 KB int8


def unrolled_model(*, constant_node: bool = False) -> onnx.ModelProto:
    """``h = Relu(Gemm(h, W, b))`` repeated STEPS times with one W, then ``MatMul(h, V)``.

    With ``constant_node``, V is a ``Constant`` node (as Paddle2ONNX writes it), not an
    initializer.
    """
    nodes = []
    h = "x"
    for step in range(STEPS):
        nodes += [
            helper.make_node("Gemm", [h, "w", "b"], [f"g{step}"], name=f"step{step}", transB=1),
            helper.make_node("Relu", [f"g{step}"], [f"h{step}"], name=f"relu{step}"),
        ]
        h = f"h{step}"
    inits = {"w": rand(WIDTH, WIDTH, seed=0, std=0.15), "b": rand(WIDTH, seed=1, std=0.1)}
    v = rand(WIDTH, WIDTH, seed=2, std=0.15)
    if constant_node:
        nodes.insert(0, helper.make_node("Constant", [], ["v"], value=numpy_helper.from_array(v)))
    else:
        inits["v"] = v
    nodes.append(helper.make_node("MatMul", [h, "v"], ["y"], name="head"))
    return make_model(nodes, {"x": ["N", WIDTH]}, {"y": ["N", WIDTH]}, inits)


def samples(n: int = 32) -> np.ndarray:
    return rand(n, WIDTH, seed=3, std=1.0)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {"x": x})[0]


def int8_weights(model: onnx.ModelProto) -> list[str]:
    """Names of the int8 initializers of the weight W's size (one per stored copy)."""
    return [
        t.name
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and numpy_helper.to_array(t).size == WIDTH**2
    ]


def static(model: onnx.ModelProto) -> onnx.ModelProto:
    config = QuantizeConfig(min_fidelity=None)
    return quantize_static(model, CalibrationData({"x": samples()}), config).model


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_static_stores_a_shared_weight_once_and_all_steps_read_it() -> None:
    model = unrolled_model()
    q = static(model)
    assert len(int8_weights(q)) == 2  # W once (not STEPS times), V once
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    readers = [
        sorted(n.name for n in q.graph.node if dq.output[0] in n.input)
        for w_q in int8_weights(q)
        for dq in dqs
        if dq.input[0] == w_q
    ]
    assert [f"step{s}" for s in range(STEPS)] in readers  # W's one copy feeds every step
    x = samples(64)
    assert cosine(run(q, x), run(model, x)) > 0.999


def test_dynamic_stores_a_shared_weight_once() -> None:
    model = unrolled_model()
    q = quantize_dynamic(model).model
    assert Counter(n.op_type for n in q.graph.node)["MatMulInteger"] == STEPS + 1
    assert len(int8_weights(q)) == 2
    x = samples(64)
    assert cosine(run(q, x), run(model, x)) > 0.999


def test_weight_only_storage_decodes_a_shared_weight_once() -> None:
    model = unrolled_model()
    q = onnx.ModelProto()
    q.CopyFrom(model)
    assert compress_float_weights(q) == 2  # W and V, each once
    assert len(int8_weights(q)) == 2
    int8_inits = {t.name for t in q.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    assert sum(n.op_type == "Cast" and n.input[0] in int8_inits for n in q.graph.node) == 2
    x = samples(64)
    np.testing.assert_allclose(run(q, x), run(model, x), atol=0.05 * np.abs(run(model, x)).max())


@pytest.mark.parametrize("constant_node", [False, True], ids=["initializers", "constant_node"])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_quantizing_never_grows_the_model(mode: str, constant_node: bool) -> None:
    model = unrolled_model(constant_node=constant_node)
    q = static(model) if mode == "static" else quantize_dynamic(model).model
    # two (128, 128) weights: 128 KB float; int8 is 32 KB plus scales, names and nodes
    assert q.ByteSize() * 3 < model.ByteSize()
