"""Pool padding in TFLite export. TFLite's SAME padding leaves the pads out of a pool (a max over
real values, an average over the real count), so ONNX pads that are not centred, a MaxPool's
ceil_mode, and an AveragePool that counts its pads need an explicit PAD: filled with the lowest
int8 value before a max (a pad never wins), with zeros (the zero point) before an average that
counts them. An AveragePool that leaves non-centred pads out of its count has no TFLite form and
is refused in one line. Oracle: ``onnx.reference`` on the int8 ONNX model, within one output
step (the average's rounding) or exactly (a max moves int8 values as they are)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from test_tflite_export import _float_model, _run_tflite

from quanta.errors import ModelError
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.compact import expand_qdq
from quanta.runtime import run_model
from quanta.runtime.litert import tflite_operators
from quanta.tflite import onnx_to_tflite
from quanta.tflite.float_convert import float_onnx_to_tflite

pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed")

CONFIG = QuantizeConfig(
    min_fidelity=None, method="minmax", activation_type="int8", latency_check=False
)


def _conv_pool_conv(op: str, **pool: object) -> onnx.ModelProto:
    """x (N, 2, 8, 8) -> Conv 1x1 with a bias of -3 (mostly negative values, where a pad of 0
    would win a max) -> ``op`` 3x3 stride 2 -> Conv 1x1 (identity) -> y. The last Conv keeps
    the pool int8."""
    rng = np.random.default_rng(0)
    inits = {
        "w": rng.normal(0, 0.3, (2, 2, 1, 1)), "b": np.full(2, -3.0),
        "w2": np.eye(2).reshape(2, 2, 1, 1), "b2": np.zeros(2),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node(op, ["c"], ["p"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                         **pool),
        helper.make_node("Conv", ["p", "w2", "b2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]  # fmt: skip
    return _float_model(nodes, inits, ["N", 2, 8, 8], ["N", 2, "H", "W"])


@pytest.mark.parametrize(
    ("op", "pool", "pad_op"),
    [
        ("MaxPool", {"pads": [0, 0, 2, 2]}, "PADV2"),  # not centred: the lowest value
        ("MaxPool", {"pads": [1, 1, 1, 1]}, "PADV2"),  # SAME would be [0, 0, 1, 1] on 8
        ("MaxPool", {"pads": [0, 0, 1, 1]}, None),  # SAME
        ("MaxPool", {"ceil_mode": 1}, None),  # 4 windows, not 3: SAME's [0, 0, 1, 1]
        ("MaxPool", {"ceil_mode": 1, "pads": [1, 1, 1, 1]}, "PADV2"),  # 5 windows
        ("AveragePool", {"pads": [0, 0, 1, 1]}, None),  # SAME, the pad left out of the count
        ("AveragePool", {"pads": [0, 0, 1, 1], "count_include_pad": 1}, "PAD"),
        ("AveragePool", {"pads": [1, 1, 1, 1], "count_include_pad": 1}, "PAD"),
        # auto_pad (tf2onnx's spelling): the pads ONNX computes, the odd one at the end (UPPER)
        # or the beginning (LOWER); no "pads" attribute at all
        ("MaxPool", {"auto_pad": "SAME_UPPER"}, None),  # [0, 0, 1, 1]: SAME
        ("MaxPool", {"auto_pad": "SAME_LOWER"}, "PADV2"),  # [1, 1, 0, 0]
        ("AveragePool", {"auto_pad": "SAME_UPPER"}, None),
    ],
)  # fmt: skip
def test_pool_pads_match_the_onnx_graph(op: str, pool: dict[str, object], pad_op: str) -> None:
    x = np.random.default_rng(1).normal(0, 1, (72, 2, 8, 8)).astype(np.float32)
    model = quantize_static(_conv_pool_conv(op, **pool), CalibrationData({"x": x[:64]}), CONFIG)
    ref = ReferenceEvaluator(model.model).run(None, {"x": x[:64]})[0]
    data = onnx_to_tflite(model.model, {"y": (float(ref.min()), float(ref.max()))})
    ops = tflite_operators(data)
    assert ops.count("PAD") + ops.count("PADV2") == (pad_op is not None), ops
    if pad_op:
        assert pad_op in ops, ops
    # NOTE: onnx.reference 1.20 computes a SAME_LOWER pool as SAME_UPPER; ONNX Runtime does not
    if pool.get("auto_pad") == "SAME_LOWER":
        (want,) = run_model(model.model, {"x": x[64:]})
    else:
        want = ReferenceEvaluator(model.model).run(None, {"x": x[64:]})[0]
    got = _run_tflite(data, x[64:])
    assert got.shape == want.shape
    # a max moves int8 values as they are; TFLite rounds an average onto its input's grid
    # and the ONNX graph onto its output's: one step of the pool's grids apart
    plain = expand_qdq(model.model)
    consts = {i.name: numpy_helper.to_array(i) for i in plain.graph.initializer}
    scales = [
        float(consts[n.input[1]])
        for n in plain.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] in ("c_pre", "p_pre")
    ]
    tolerance = 1e-5 if op == "MaxPool" else 1.01 * max(scales)
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)


def test_average_pool_leaving_uncentred_pads_out_is_refused() -> None:
    x = np.random.default_rng(1).normal(0, 1, (64, 2, 8, 8)).astype(np.float32)
    model = _conv_pool_conv("AveragePool", pads=[1, 1, 1, 1])
    q = quantize_static(model, CalibrationData({"x": x}), CONFIG).model
    with pytest.raises(ModelError, match=r"AveragePool 'pool': pads \[1, 1, 1, 1\] left out"):
        onnx_to_tflite(q, {"y": (-4.0, 0.0)})


@pytest.mark.parametrize(
    "pool", [{"pads": [0, 0, 2, 2]}, {"ceil_mode": 1, "pads": [1, 1, 1, 1]}], ids=str
)
def test_float_max_pool_pads_with_the_lowest_float(pool: dict[str, object]) -> None:
    """The float writer (the float and weight-only TFLite variants) pads a MaxPool the same
    way, with float32's lowest value."""
    model = _conv_pool_conv("MaxPool", **pool)
    data = float_onnx_to_tflite(model)
    ops = tflite_operators(data)
    assert "PADV2" in ops and "MAX_POOL_2D" in ops, ops
    x = np.random.default_rng(2).normal(0, 1, (8, 2, 8, 8)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(_run_tflite(data, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("op", ["MaxPool", "Conv"])
def test_float_writer_spells_out_auto_pad(op: str, auto_pad: str) -> None:
    """``auto_pad`` and no ``pads``, as tf2onnx writes a Keras "same" layer (one pad on 8
    values: at the end for UPPER, TFLite's SAME; at the beginning for LOWER): written as VALID
    with no pad, LiteRT computed 3 outputs where ONNX has 4, and MTCNN's file failed to
    allocate. Oracle: ONNX Runtime on the float model (``onnx.reference`` 1.20 computes a
    SAME_LOWER pool as SAME_UPPER)."""
    rng = np.random.default_rng(3)
    inits = {"w": rng.normal(0, 0.3, (2, 2, 3, 3)), "b": np.full(2, -1.0)}
    window = {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": auto_pad}
    inputs = ["x", "w", "b"] if op == "Conv" else ["x"]
    nodes = [helper.make_node(op, inputs, ["y"], name="window", **window)]
    model = _float_model(nodes, inits if op == "Conv" else {}, ["N", 2, 8, 8], ["N", 2, 4, 4])
    data = float_onnx_to_tflite(model)
    padded = {"PAD", "PADV2"} & set(tflite_operators(data))
    assert bool(padded) == (auto_pad == "SAME_LOWER")
    x = np.random.default_rng(4).normal(0, 1, (4, 2, 8, 8)).astype(np.float32)
    (want,) = run_model(model, {"x": x})
    assert want.shape == (4, 2, 4, 4)
    np.testing.assert_allclose(_run_tflite(data, x), want, rtol=1e-5, atol=1e-5)
