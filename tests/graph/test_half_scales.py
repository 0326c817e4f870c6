"""Float16 scales of int8-stored weights (graph/half_scales.py): hand-computed oracles for the
scales and values, onnx.reference and ONNX Runtime for what the decoder computes and folds."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from tiny_graphs import make_model, rand

from quanta.graph import weight_only
from quanta.graph.compact import compact_qdq
from quanta.graph.dynamic import quantize_dynamic
from quanta.graph.half_scales import CAST_BYTES
from quanta.graph.weight_only import compress_float_weights

# every positive normal float16, in order: the oracle for "the float16 at or above"
NORMAL_HALVES = np.arange(0x0400, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)


def depthwise(c: int, w: np.ndarray | None = None) -> onnx.ModelProto:
    """A 3x3 depthwise Conv (pad 1) over c channels: 9 int8 values a channel beside its scale."""
    w = rand(c, 1, 3, 3, seed=3) if w is None else w
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="dw", group=c, pads=[1] * 4)
    return make_model(
        [node], {"x": [1, c, 8, 8]}, {"y": [1, c, 8, 8]}, {"w": w, "b": rand(c, seed=4)}
    )


def stored(model: onnx.ModelProto) -> tuple[np.ndarray, onnx.TensorProto, str]:
    """The Conv weight's decoder: (int8 values, the scale initializer, the decoded tensor)."""
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    mul = producer[next(n for n in model.graph.node if n.op_type == "Conv").input[1]]
    assert mul.op_type == "Mul" and producer[mul.input[0]].op_type == "Cast"
    q = numpy_helper.to_array(inits[producer[mul.input[0]].input[0]])
    scale = mul.input[1]
    scale = scale if scale in inits else producer[scale].input[0]  # Cast of a float16 scale
    return q, inits[scale], mul.output[0]


def weight_stored(w: np.ndarray) -> tuple[onnx.ModelProto, np.ndarray, onnx.TensorProto, str]:
    model = depthwise(w.shape[0], w)
    assert compress_float_weights(model) == 1
    return (model, *stored(model))


def test_scales_are_the_float16_at_or_above_and_the_values_rounded_again() -> None:
    c = 48
    w = rand(c, 1, 3, 3, seed=3) * np.geomspace(0.02, 30, c, dtype=np.float32)[:, None, None, None]
    model, q, scale_init, decoded = weight_stored(w)
    assert scale_init.data_type == onnx.TensorProto.FLOAT16
    s16 = numpy_helper.to_array(scale_init).astype(np.float32).reshape(c)
    s32 = (np.abs(w).reshape(c, -1).max(1).astype(np.float64) / 127).astype(np.float32)
    # golden: the smallest normal float16 that is >= the float32 scale
    np.testing.assert_array_equal(s16, NORMAL_HALVES[np.searchsorted(NORMAL_HALVES, s32)])
    assert np.all(s16 >= s32) and np.any(s16 > s32)
    # golden: the int8 values rounded (half to even) on the float16 scale's grid, none clipped
    want_q = np.rint(w / s16[:, None, None, None])
    assert np.abs(want_q).max() <= 127
    np.testing.assert_array_equal(q, want_q.astype(np.int8))
    # the decoder (onnx.reference) gives q * s16 in float32 exactly, within half a step of w,
    # which is at most one float16 step (2**-10) coarser than the float32 scale's half step
    got = ReferenceEvaluator(model).run([decoded], {"x": np.zeros((1, c, 8, 8), np.float32)})[0]
    exact = q.astype(np.float32) * s16[:, None, None, None]
    np.testing.assert_array_equal(got, exact)
    err = np.abs(exact - w).reshape(c, -1).max(1)
    assert np.all(err <= s16 / 2) and np.all(err <= s32 / 2 * (1 + 2**-10))


def test_onnx_runtime_folds_the_decoder_into_the_weight_it_computes() -> None:
    c = 48
    model, q, scale_init, _ = weight_stored(rand(c, 1, 3, 3, seed=3))
    s16 = numpy_helper.to_array(scale_init).astype(np.float32)
    assert Counter(n.op_type for n in model.graph.node) == {"Cast": 2, "Mul": 1, "Conv": 1}
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    assert [n.op_type for n in optimized.graph.node] == ["Conv"]  # Cast, Cast, Mul folded
    folded = {t.name: numpy_helper.to_array(t) for t in optimized.graph.initializer}
    np.testing.assert_array_equal(folded[optimized.graph.node[0].input[1]], q * s16)
    x = rand(1, c, 8, 8, seed=5, std=1.0)
    with_decoded = depthwise(c, q.astype(np.float32) * s16)
    want = ReferenceEvaluator(with_decoded).run(None, {"x": x})[0]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)


def test_a_scale_float16_cannot_hold_keeps_the_tensor_float32() -> None:
    w = rand(32, 1, 3, 3, seed=3)
    w[5] *= 1e-4  # max |w| ~ 1e-4: a scale ~ 1e-6, under float16's smallest normal 2**-14
    _, q, scale_init, _ = weight_stored(w)
    assert scale_init.data_type == onnx.TensorProto.FLOAT
    s32 = numpy_helper.to_array(scale_init).reshape(32)
    np.testing.assert_array_equal(s32, (np.abs(w).reshape(32, -1).max(1) / 127).astype(np.float32))


def test_an_all_zero_channel_takes_any_normal_scale_and_decodes_to_zero() -> None:
    w = rand(32, 1, 3, 3, seed=3)
    w[7] = 0.0  # a pruned channel: its float32 scale is the tiny MIN_SCALE
    model, q, scale_init, decoded = weight_stored(w)
    assert scale_init.data_type == onnx.TensorProto.FLOAT16
    got = ReferenceEvaluator(model).run([decoded], {"x": np.zeros((1, 32, 8, 8), np.float32)})[0]
    assert not np.any(q[7]) and not np.any(got[7])


@pytest.mark.parametrize(("c", "half"), [(16, False), (24, True)])
def test_float16_scales_only_where_they_pay_for_their_cast(c: int, half: bool) -> None:
    _, _, scale_init, _ = weight_stored(rand(c, 1, 3, 3, seed=3))
    want = onnx.TensorProto.FLOAT16 if half else onnx.TensorProto.FLOAT
    assert scale_init.data_type == want


def test_the_cast_costs_no_more_bytes_than_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    c = 48
    half = depthwise(c)
    compress_float_weights(half)
    monkeypatch.setattr(weight_only, "half_scales", lambda *_: None)
    full = depthwise(c)
    compress_float_weights(full)
    for model in (half, full):
        compact_qdq(model)  # the short names the written file has
    saved = full.ByteSize() - half.ByteSize()
    assert saved > 0
    cast_cost = 2 * c - saved  # two bytes a scale saved, less what the Cast node takes
    assert 0 < cast_cost <= CAST_BYTES


def test_dynamic_mode_stores_its_float_convs_weights_with_float16_scales() -> None:
    c = 48
    model = depthwise(c)
    q = quantize_dynamic(model).model
    _, scale_init, _ = stored(q)
    assert scale_init.data_type == onnx.TensorProto.FLOAT16
    x = rand(4, c, 8, 8, seed=6, std=1.0)
    session = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(4)])
    want = np.concatenate(
        [ReferenceEvaluator(model).run(None, {"x": x[i : i + 1]})[0] for i in range(4)]
    )
    # 9 weights a channel, each off by at most half a step (max |w| / 254), inputs ~N(0, 1)
    assert np.abs(got - want).max() <= 9 * 3.5 * np.abs(rand(c, 1, 3, 3, seed=3)).max() / 254


def test_a_node_kept_float_for_its_answers_keeps_float32_scales() -> None:
    model = depthwise(128)  # 1,152 values: stored int8 even when kept float for its answers
    assert compress_float_weights(model, exact={"dw"}) == 1
    _, scale_init, _ = stored(model)
    assert scale_init.data_type == onnx.TensorProto.FLOAT
