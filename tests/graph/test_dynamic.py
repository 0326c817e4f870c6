"""quantize_dynamic: int8 Gemm/MatMul that ORT fuses, weight-only int8 Conv that ORT folds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph import QuantizeConfig, save_model
from quanta.graph.dynamic import quantize_dynamic
from quanta.runtime import count_kernels, make_session

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, feeds)[0]


def matmul_model(*, trans_a: int = 0) -> onnx.ModelProto:
    """x (N, 16) @ W (16, 10) as a MatMul, or as a Gemm with transA=1 (x given as (16, N))."""
    w = np.random.default_rng(0).normal(0.0, 0.3, (16, 10)).astype(np.float32)
    if trans_a:
        node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transA=1)
        x_shape: list[int | str] = [16, "N"]
    else:
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")
        x_shape = ["N", 16]
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_gemm_becomes_dynamic_quantize_and_matmul_integer(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    fc_w, fc_b = consts(model)["fc.weight"], consts(model)["fc.bias"]  # (10, 36) with transB
    q = quantize_dynamic(model).model
    counts = Counter(n.op_type for n in q.graph.node)
    assert counts["Gemm"] == 0
    assert counts["DynamicQuantizeLinear"] == 1 and counts["MatMulInteger"] == 1
    matmul = next(n for n in q.graph.node if n.op_type == "MatMulInteger")
    c = consts(q)
    wq, w_zp = c[matmul.input[1]], c[matmul.input[3]]
    assert wq.dtype == np.int8 and wq.shape == (36, 10)  # B as (K, N): transposed from (N, K)
    assert w_zp.dtype == np.int8 and w_zp.shape == (10,) and not w_zp.any()
    assert producer(q, matmul.input[0]).op_type == "DynamicQuantizeLinear"
    add = producer(q, "logits")  # the output keeps its name; the float bias is added last
    assert add.op_type == "Add"
    np.testing.assert_array_equal(c[add.input[1]], fc_b)
    scale = c[next(n for n in q.graph.node if n.name == "fc_ScaleMul").input[1]]
    assert scale.shape == (10,)
    assert np.all(np.abs(wq * scale - fc_w.T) <= scale / 2 * (1 + 1e-6))


def test_conv_weight_is_int8_decoded_by_cast_and_mul(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    w = consts(model)["conv.weight"]
    q = quantize_dynamic(model).model
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    mul = producer(q, conv.input[1])
    cast = producer(q, mul.input[0])
    assert (mul.op_type, cast.op_type) == ("Mul", "Cast")
    c = consts(q)
    wq, scale = c[cast.input[0]], c[mul.input[1]]
    assert wq.dtype == np.int8 and wq.shape == w.shape
    assert scale.dtype == np.float32 and scale.shape == (4, 1, 1, 1)  # per output channel
    assert np.all(np.abs(wq * scale - w) <= scale / 2 * (1 + 1e-6))
    assert "conv.weight" not in c


def test_ort_fuses_matmul_and_folds_conv_weights(make_convnet: MakeConvnet, tmp_path: Path) -> None:
    path = tmp_path / "dynamic.onnx"
    save_model(quantize_dynamic(make_convnet()).model, path)
    kernels = count_kernels(path)
    assert kernels.int8["DynamicQuantizeMatMul"] == 1
    leftovers = {"DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "Add", "Gemm"}
    assert not leftovers & set(kernels.all)  # fused, and the Conv weight decoder folded
    assert kernels.all["Conv"] == 1  # float arithmetic on a folded float constant


@pytest.mark.parametrize("per_channel", [True, False])
def test_outputs_close_to_float(
    make_convnet: MakeConvnet, make_images: MakeImages, per_channel: bool
) -> None:
    model = make_convnet(hw=28, channels=8)
    images = make_images(32, hw=28)
    q = quantize_dynamic(model, QuantizeConfig(mode="dynamic", per_channel=per_channel)).model
    y_float, y_int8 = run_ort(model, {"image": images}), run_ort(q, {"image": images})
    cos = (y_float * y_int8).sum() / (np.linalg.norm(y_float) * np.linalg.norm(y_int8))
    assert cos > 0.999
    # int8 inputs and weights: each product errs by about 1/256 of its range.
    assert np.abs(y_int8 - y_float).max() <= 0.03 * np.abs(y_float).max()


def test_matmul_per_tensor(make_images: MakeImages) -> None:
    model = matmul_model()
    q = quantize_dynamic(model, QuantizeConfig(mode="dynamic", per_channel=False)).model
    counts = Counter(n.op_type for n in q.graph.node)
    assert counts["MatMul"] == 0 and counts["MatMulInteger"] == 1 and counts["Add"] == 0
    matmul = next(n for n in q.graph.node if n.op_type == "MatMulInteger")
    assert consts(q)[matmul.input[3]].shape == ()  # one weight zero point, one scale
    x = np.random.default_rng(3).normal(size=(8, 16)).astype(np.float32)
    np.testing.assert_allclose(run_ort(q, {"x": x}), run_ort(model, {"x": x}), atol=0.05, rtol=0.05)


def test_already_quantized_model_is_refused(make_convnet: MakeConvnet) -> None:
    q = quantize_dynamic(make_convnet()).model
    with pytest.raises(ModelError, match="already quantized"):
        quantize_dynamic(q)


def test_input_model_is_not_modified(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    before = model.SerializeToString()
    quantize_dynamic(model)
    assert model.SerializeToString() == before


def test_gemm_with_trans_a_stays_float() -> None:
    result = quantize_dynamic(matmul_model(trans_a=1))
    assert Counter(n.op_type for n in result.model.graph.node)["Gemm"] == 1
    assert [(f.name, f.op_type) for f in result.float_nodes] == [("fc", "Gemm")]


def test_gemm_with_trans_a_reason_names_the_real_cause() -> None:
    (node,) = quantize_dynamic(matmul_model(trans_a=1)).float_nodes
    assert "not a constant" not in node.reason


def test_compact_dynamic_model_is_smaller_with_the_same_outputs(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model, images = make_convnet(hw=28, channels=8), make_images(8, hw=28)
    plain = quantize_dynamic(model, QuantizeConfig(mode="dynamic", compact=False)).model
    small = quantize_dynamic(model).model  # compact by default, as static
    assert small.ByteSize() < plain.ByteSize()
    np.testing.assert_array_equal(
        run_ort(small, {"image": images}), run_ort(plain, {"image": images})
    )
    # generated constants get short names; the float model's Conv keeps its name
    assert all(len(t.name) <= 3 for t in small.graph.initializer)
    assert "conv" in {n.name for n in small.graph.node if n.op_type == "Conv"}


def two_matmuls() -> onnx.ModelProto:
    """x (N, 16) -> Gemm(transB, bias) 'fc1' -> Relu -> MatMul 'fc2' -> 'attn' (y @ y.T)."""
    rng = np.random.default_rng(3)
    w1 = rng.normal(0.0, 0.3, (12, 16)).astype(np.float32)  # (N_out, K): transB=1
    b1 = rng.normal(0.0, 0.1, 12).astype(np.float32)
    w2 = rng.normal(0.0, 0.3, (12, 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
            helper.make_node("MatMul", ["y", "yt"], ["z"], name="attn"),
            helper.make_node("Transpose", ["y"], ["yt"], name="t"),
        ],
        "two_matmuls",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", "N"])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.graph.node.sort(key=lambda n: ["fc1", "relu", "fc2", "t", "attn"].index(n.name))
    return model


@pytest.mark.parametrize("per_channel", [True, False])
def test_dynamic_matmuls_rewrites_the_named_ones_as_onnx_computes_them(per_channel: bool) -> None:
    from onnx.reference import ReferenceEvaluator

    from quanta.graph.dynamic import dynamic_matmuls

    model = two_matmuls()
    float_model = onnx.ModelProto()
    float_model.CopyFrom(model)
    # fc2 is not named; attn is named but multiplies two activations, so it is refused
    done = dynamic_matmuls(model, ["fc1", "attn"], per_channel, reduced=False)
    assert done == ["fc1"]
    onnx.checker.check_model(model)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["DynamicQuantizeLinear"] == 1 and ops["MatMulInteger"] == 1 and ops["MatMul"] == 2
    assert "w1" not in consts(model)  # the float weight is gone, stored int8 instead
    x = np.random.default_rng(4).normal(0.0, 1.0, (5, 16)).astype(np.float32)
    got = run_ort(model, {"x": x})
    # oracle: the ONNX reference on the same graph, and the float model within the int8 error
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    exact = run_ort(float_model, {"x": x})
    assert np.abs(got - exact).max() < 0.05 * np.abs(exact).max()


def test_float_matmuls_reads_dynamic_int8_back_as_float_matmul_of_the_int8_weight() -> None:
    """The TFLite export's reading of dynamic int8: the chain becomes MatMul of the weight
    decoded from its int8 values; the output changes only by the input's run-time rounding."""
    from quanta.graph.dynamic import dynamic_matmuls
    from quanta.graph.dynamic_float import float_matmuls

    model = two_matmuls()
    dynamic_matmuls(model, ["fc1", "fc2"], per_channel=True, reduced=False)
    int8 = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    back = onnx.ModelProto()
    back.CopyFrom(model)
    assert float_matmuls(back) == 2
    onnx.checker.check_model(back)
    ops = Counter(n.op_type for n in back.graph.node)
    assert ops == Counter({"MatMul": 3, "Add": 1, "Relu": 1, "Transpose": 1}), ops
    # the float weight is the int8 one times its per-column scale (oracle: numpy)
    (fc2,) = [n for n in back.graph.node if n.output[0] == "y"]
    decoded = numpy_helper.to_array(
        next(t for t in back.graph.initializer if t.name == fc2.input[1])
    )
    q = next(v for k, v in int8.items() if v.dtype == np.int8 and v.shape == (12, 8))
    scale = next(v for k, v in int8.items() if v.dtype == np.float32 and v.shape == (8,))
    np.testing.assert_array_equal(decoded, q.astype(np.float32) * scale)
    x = np.random.default_rng(4).normal(0.0, 1.0, (5, 16)).astype(np.float32)
    got, dyn = run_ort(back, {"x": x}), run_ort(model, {"x": x})
    assert np.abs(got - dyn).max() < 0.02 * np.abs(dyn).max()
    assert float_matmuls(back) == 0  # nothing left to read back
