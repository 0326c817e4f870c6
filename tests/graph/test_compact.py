"""Compact QDQ: fewer stored parameters, the same arithmetic, and a lossless way back."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.compact import compact_qdq, expand_qdq
from quanta.graph.prepare import prepare
from quanta.runtime import count_kernels, make_session

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def _quantize(model: onnx.ModelProto, images: np.ndarray, compact: bool) -> onnx.ModelProto:
    config = QuantizeConfig(compact=compact, method="minmax", min_fidelity=None)
    return quantize_static(model, CalibrationData({"image": images}), config).model


def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _by_name(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {n.name: n for n in model.graph.node}


def _dq_params(model: onnx.ModelProto) -> dict[tuple[str, int], tuple[np.ndarray, ...]]:
    """Each constant DequantizeLinear's (input, scale, zero point) values, keyed by the node
    that reads its output and the input position (compact renames the Q/DQ nodes)."""
    c = _consts(model)
    dq = {
        n.output[0]: n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in c
    }
    return {
        (n.name, k): tuple(c[name] for name in dq[x].input)
        for n in model.graph.node
        for k, x in enumerate(n.input)
        if x in dq
    }


def _int8_kernels(model: onnx.ModelProto, tmp: Path) -> dict[str, int]:
    path = tmp / f"{model.ByteSize()}.onnx"
    onnx.save_model(model, path)
    return dict(count_kernels(path).int8)


def test_compact_runs_bit_identically_and_is_smaller(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path
) -> None:
    model, images = make_convnet(channels=8), make_images(32)
    plain, small = _quantize(model, images, False), _quantize(model, images, True)
    assert small.ByteSize() < plain.ByteSize()
    out_plain = make_session(plain.SerializeToString()).run(None, {"image": images})[0]
    out_small = make_session(small.SerializeToString()).run(None, {"image": images})[0]
    np.testing.assert_array_equal(out_small, out_plain)
    ref_plain = ReferenceEvaluator(plain).run(None, {"image": images})[0]
    ref_small = ReferenceEvaluator(small).run(None, {"image": images})[0]
    np.testing.assert_array_equal(ref_small, ref_plain)
    # ONNX Runtime still fuses every group into its integer kernels.
    kernels = _int8_kernels(small, tmp_path)
    assert kernels == _int8_kernels(plain, tmp_path)
    assert {"QLinearConv", "QGemm"} <= set(kernels)


def test_what_compact_leaves_out(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    small = _quantize(make_convnet(), make_images(16), True)
    nodes, consts = _by_name(small), _consts(small)
    producer = {o: n for n in small.graph.node for o in n.output}
    conv, fc = nodes["conv"], nodes["fc"]
    for op in (conv, fc):
        bias_dq = producer[op.input[2]]
        assert len(bias_dq.input) == 2  # int32 bias: zero point implicit
        product = producer[bias_dq.input[1]]  # scale = input scale x weight scale
        x_dq, w_dq = producer[op.input[0]], producer[op.input[1]]
        assert product.op_type == "Mul"
        assert list(product.input) == [x_dq.input[1], w_dq.input[1]]
    assert len(producer[conv.input[1]].input) == 2  # Conv weight: zero point implicit
    fc_w = producer[fc.input[1]]
    assert len(fc_w.input) == 3 and not consts[fc_w.input[2]].any()  # Gemm keeps it for ORT
    # activations keep their (non-zero, uint8 or int8) zero points
    assert len(producer[conv.input[0]].input) == 3


def test_expand_restores_every_parameter(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model, images = make_convnet(channels=6), make_images(16)
    plain, small = _quantize(model, images, False), _quantize(model, images, True)
    expanded = expand_qdq(small)
    assert "Mul" not in {n.op_type for n in expanded.graph.node}
    want, got = _dq_params(plain), _dq_params(expanded)
    assert want.keys() == got.keys()
    for name, values in want.items():
        assert len(got[name]) == len(values) == 3, name
        for a, b in zip(values, got[name], strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b)
    # and compacting the expanded form gives back the compact model's parameters
    again = onnx.ModelProto()
    again.CopyFrom(expanded)
    compact_qdq(again)
    assert sorted(n.op_type for n in again.graph.node) == sorted(
        n.op_type for n in small.graph.node
    )


def _conv_with_bias_scale(bias_scale: np.ndarray) -> onnx.ModelProto:
    """Hand-built QDQ Conv whose bias DequantizeLinear has the given (stored) scale."""
    inits = {
        "x_s": np.float32(0.02),
        "x_zp": np.int8(-3),
        "w_q": np.array([[[[1, -2], [3, 127]]], [[[-127, 5], [0, 9]]]], np.int8),
        "w_s": np.array([0.01, 0.03], np.float32),
        "w_zp": np.zeros(2, np.int8),
        "b_q": np.array([100, -40], np.int32),
        "b_s": bias_scale.astype(np.float32),
        "b_zp": np.zeros(2, np.int32),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["x_q"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_zp"], ["x_dq"], name="x_DQ"),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], name="w_DQ", axis=0),
        helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_zp"], ["b"], name="b_DQ", axis=0),
        helper.make_node("Conv", ["x_dq", "w", "b"], ["y"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes, "qdq_conv",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 2, 2])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_bias_scale_becomes_a_product_only_when_it_is_exactly_one() -> None:
    exact = np.float32(0.02) * np.array([0.01, 0.03], np.float32)
    model = _conv_with_bias_scale(exact)
    x = np.random.default_rng(0).random((1, 1, 3, 3), dtype=np.float32)
    before = ReferenceEvaluator(model).run(None, {"x": x})[0]
    compact_qdq(model)
    x_dq, w_dq, b_dq = _conv_dqs(model)
    assert b_dq.input[1] not in _consts(model)
    (mul,) = [n for n in model.graph.node if n.op_type == "Mul"]
    assert list(mul.input) == [x_dq.input[1], w_dq.input[1]]
    assert list(mul.output) == [b_dq.input[1]]
    assert len(w_dq.input) == len(b_dq.input) == 2 and len(x_dq.input) == 3  # zero points
    np.testing.assert_array_equal(ReferenceEvaluator(model).run(None, {"x": x})[0], before)

    # one ulp away from the product: that scale carries information and stays stored
    off = np.nextafter(exact, np.float32(1.0))
    model = _conv_with_bias_scale(off)
    compact_qdq(model)
    np.testing.assert_array_equal(_consts(model)[_conv_dqs(model)[2].input[1]], off)
    assert "Mul" not in {n.op_type for n in model.graph.node}


def _conv_dqs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The DequantizeLinear nodes that feed the Conv's input, weight and bias."""
    producer = {o: n for n in model.graph.node for o in n.output}
    (conv,) = [n for n in model.graph.node if n.op_type == "Conv"]
    return [producer[name] for name in conv.input]


def test_non_zero_weight_zero_point_is_kept() -> None:
    model = _conv_with_bias_scale(np.float32(0.02) * np.array([0.01, 0.03], np.float32))
    w_zp = next(t for t in model.graph.initializer if t.name == "w_zp")
    w_zp.CopyFrom(numpy_helper.from_array(np.array([0, 1], np.int8), "w_zp"))
    compact_qdq(model)
    np.testing.assert_array_equal(_consts(model)[_conv_dqs(model)[1].input[2]], [0, 1])


def test_prepare_drops_the_exporters_parameter_record(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    helper.set_model_props(model, {"author": "someone"})
    for key in ("pkg.torch.export.ExportedProgram.graph_signature", "user.note"):
        prop = model.graph.metadata_props.add()
        prop.key, prop.value = key, "x" * 100
    out = prepare(model)
    assert [p.key for p in out.graph.metadata_props] == ["user.note"]
    assert [p.key for p in out.metadata_props] == ["author"]
    assert len(model.graph.metadata_props) == 2  # the caller's model is untouched


_SHORT = re.compile(r"[nqszd][0-9a-z]+(_[0-9]+)?")


def test_generated_names_are_short_and_the_float_models_names_stay(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model, images = make_convnet(channels=8), make_images(16)
    plain, small = _quantize(model, images, False), _quantize(model, images, True)
    qdq = {"QuantizeLinear", "DequantizeLinear"}
    float_graph = prepare(model).graph
    float_names = {n.name for n in float_graph.node}
    float_tensors = {x for n in float_graph.node for x in n.output}
    # every Q/DQ node and every integer tensor, scale and zero point has a short name
    for node in small.graph.node:
        if node.op_type in qdq:
            assert _SHORT.fullmatch(node.name), node.name
            for name in node.input[1:]:
                assert _SHORT.fullmatch(name), (node.name, name)
    # the nodes and activations of the float model keep their names
    kept = [n for n in small.graph.node if n.op_type not in qdq | {"Mul"}]
    assert kept and all(n.name in float_names for n in kept)
    assert {x for n in kept for x in n.input if x in float_tensors}
    # the names were what made the difference: the same nodes and tensor data, fewer bytes
    assert small.ByteSize() < plain.ByteSize()
    names = sum(len(x) for n in small.graph.node for x in [n.name, *n.input, *n.output])
    names_plain = sum(len(x) for n in plain.graph.node for x in [n.name, *n.input, *n.output])
    assert names < names_plain / 2, (names, names_plain)


def test_equal_scalars_are_one_initializer_and_the_answers_do_not_move() -> None:
    # two activations quantized on the same grid (scale 0.05, zero point 3) and one on another
    inits = {
        "a_s": np.float32(0.05), "a_zp": np.uint8(3),
        "b_s": np.float32(0.05), "b_zp": np.uint8(3),
        "c_s": np.float32(0.05), "c_zp": np.int8(3),  # same bits as a_zp, another type: kept
    }  # fmt: skip
    pairs = []
    for t, src in (("a", "x"), ("b", "y"), ("c", "z")):
        s, zp = f"{t}_s", f"{t}_zp"
        pairs += [
            helper.make_node("QuantizeLinear", [src, s, zp], [f"{t}_q"], name=f"{t}_Q"),
            helper.make_node("DequantizeLinear", [f"{t}_q", s, zp], [t], name=f"{t}_DQ"),
        ]
    nodes = [
        helper.make_node("Relu", ["x0"], ["x"], name="relu"),
        helper.make_node("Neg", ["x0"], ["y"], name="neg"),
        helper.make_node("Abs", ["x0"], ["z"], name="abs"),
        *pairs,
        helper.make_node("Sum", ["a", "b", "c"], ["out"], name="sum"),
    ]
    graph = helper.make_graph(
        nodes, "three_grids",
        [helper.make_tensor_value_info("x0", onnx.TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [2, 5])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    x = np.linspace(-2, 2, 10, dtype=np.float32).reshape(2, 5)
    before = ReferenceEvaluator(model).run(None, {"x0": x})[0]
    compact_qdq(model)
    onnx.checker.check_model(model, full_check=True)
    consts = _consts(model)
    assert sorted((a.dtype.name, a.item()) for a in consts.values()) == [
        ("float32", np.float32(0.05)), ("int8", 3), ("uint8", 3)
    ]  # fmt: skip
    compute = [n.name for n in model.graph.node if not n.op_type.endswith("Linear")]
    assert compute == ["relu", "neg", "abs", "sum"]
    np.testing.assert_array_equal(ReferenceEvaluator(model).run(None, {"x0": x})[0], before)
    after = make_session(model.SerializeToString()).run(None, {"x0": x})[0]
    np.testing.assert_array_equal(after, before)
