"""graph.with_uint8_input (used by QAT export): structure of the DequantizeLinear in front, the
models it refuses, and float parity on a tiny float graph built with onnx.helper.

It lives beside the QAT tests because its one caller is ``qat_to_onnx_model(uint8_input=True)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph.uint8_input import with_uint8_input
from quanta.runtime import make_session

MakeConvnet = Callable[..., onnx.ModelProto]


def _model(inputs: list[onnx.ValueInfoProto], node: onnx.NodeProto) -> onnx.ModelProto:
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([node], "g", inputs, [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_two_inputs_are_refused() -> None:
    model = _model(
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2]),
        ],
        helper.make_node("Add", ["a", "b"], ["y"]),
    )
    with pytest.raises(ModelError, match="exactly one float32 input"):
        with_uint8_input(model)


@pytest.mark.parametrize("elem_type", [TensorProto.INT64, TensorProto.UINT8, TensorProto.FLOAT16])
def test_non_float_input_is_refused(elem_type: int) -> None:
    model = _model(
        [helper.make_tensor_value_info("a", elem_type, [2])],
        helper.make_node("Cast", ["a"], ["y"], to=TensorProto.FLOAT),
    )
    with pytest.raises(ModelError, match="exactly one float32 input"):
        with_uint8_input(model)


def test_new_input_is_uint8_with_dequantize_in_front(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    before = model.SerializeToString()
    out = with_uint8_input(model)
    assert model.SerializeToString() == before  # a copy; the input model is untouched
    (inp,) = out.graph.input
    assert inp.name == "image" and inp.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 1, 8, 8]
    dq = out.graph.node[0]
    assert dq.op_type == "DequantizeLinear" and dq.input[0] == "image"
    consts = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    scale, zp = consts[dq.input[1]], consts[dq.input[2]]
    assert scale.dtype == np.float32 and scale.shape == () and scale == np.float32(1 / 255)
    assert zp.dtype == np.uint8 and zp.shape == () and zp == 0
    # every former reader of "image" now reads the dequantized tensor
    readers = [n for n in out.graph.node[1:] if dq.output[0] in n.input]
    assert [n.op_type for n in readers] == ["Conv"]
    assert not any("image" in n.input for n in out.graph.node[1:])
    assert len(out.graph.node) == len(model.graph.node) + 1


def test_outputs_equal_float_model_on_dequantized_pixels(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    u = np.random.default_rng(0).integers(0, 256, (5, 1, 8, 8), dtype=np.uint8)
    x = u.astype(np.float32) * np.float32(1 / 255)  # DequantizeLinear's arithmetic
    want = make_session(model.SerializeToString()).run(None, {"image": x})[0]
    got = make_session(with_uint8_input(model).SerializeToString()).run(None, {"image": u})[0]
    np.testing.assert_allclose(got, want, rtol=0.0, atol=1e-6)


def test_custom_scale(make_convnet: MakeConvnet) -> None:
    out = with_uint8_input(make_convnet(), scale=0.5)
    consts = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert consts[out.graph.node[0].input[1]] == np.float32(0.5)


def test_initializers_listed_as_inputs_do_not_count(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    # old-style models (IR < 4) also list their weights as graph inputs
    model.graph.input.append(
        helper.make_tensor_value_info("conv.weight", TensorProto.FLOAT, [4, 1, 3, 3])
    )
    out = with_uint8_input(model)
    types = {i.name: i.type.tensor_type.elem_type for i in out.graph.input}
    assert types == {"image": TensorProto.UINT8, "conv.weight": TensorProto.FLOAT}


def test_fresh_names_do_not_collide(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    # a tensor already named like the one the pass would pick
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.0), "image_float"))
    out = with_uint8_input(model)
    dq = out.graph.node[0]
    assert dq.output[0] != "image_float"
    onnx.checker.check_model(out)
