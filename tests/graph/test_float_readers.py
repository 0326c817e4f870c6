"""A node kept float between int8 neighbours runs in float in ONNX Runtime.

Between a DequantizeLinear and the QuantizeLinear of an int8 reader, ONNX Runtime fuses a float
node back into an integer kernel: a float Conv became QLinearConv with its weight quantized per
tensor by ONNX Runtime itself. The kept node reads its input through a per-channel
DequantizeLinear of its own (``quanta.graph.float_readers``), in the builds the fidelity search
and the latency check measure as in the model written, and its readers stay int8. Oracles: ONNX
Runtime's optimized graph (which kernels run) and ``onnx.reference`` on the same QDQ model
(float math where the graph is float).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tiny_graphs import make_model

from quanta.graph import CalibrationData, QuantizeConfig, prepare
from quanta.graph.result import FloatKind, FloatReason
from quanta.graph.static import _Builds, _calibrate
from quanta.runtime import count_kernels, make_session

PLAIN = QuantizeConfig(min_fidelity=None, method="minmax", activation_type="uint8")


def three_convs(middle: str = "Conv") -> onnx.ModelProto:
    """x (N, 4, 8, 8) -> Conv c0 -> a -> ``middle`` c1 -> b -> Conv c2 -> y, 3x3 pad 1."""
    rng = np.random.default_rng(0)
    inits = {f"w{i}": rng.normal(0, 0.3, (4, 4, 3, 3)) for i in (0, 2)}
    inits.update({f"b{i}": rng.normal(0, 0.1, 4) for i in (0, 2)})
    if middle == "Conv":
        inits.update(w1=rng.normal(0, 0.3, (4, 4, 3, 3)), b1=rng.normal(0, 0.1, 4))
        mid = helper.make_node("Conv", ["a", "w1", "b1"], ["b"], name="c1", pads=[1, 1, 1, 1])
    else:
        mid = helper.make_node(middle, ["a"], ["b"], name="c1")
    return make_model(
        [
            helper.make_node("Conv", ["x", "w0", "b0"], ["a"], name="c0", pads=[1, 1, 1, 1]),
            mid,
            helper.make_node("Conv", ["b", "w2", "b2"], ["y"], name="c2", pads=[1, 1, 1, 1]),
        ],
        {"x": ["N", 4, 8, 8]},
        {"y": ["N", 4, 8, 8]},
        inits,
    )


def _x(n: int = 32) -> np.ndarray:
    return np.random.default_rng(1).normal(0, 1, (n, 4, 8, 8)).astype(np.float32)


def _build(
    model: onnx.ModelProto, kind: FloatKind = FloatKind.SPEED, config: QuantizeConfig = PLAIN
) -> tuple[bytes, set[str]]:
    """``model`` quantized as a search build with c1 kept float: (its bytes, its float nodes)."""
    prepared = prepare(model)
    calibration = _calibrate(prepared, CalibrationData({"x": _x()}), config, None, {}, None)
    built, plan, _ = _Builds(prepared, calibration, config).build(
        {"c1": FloatReason("kept float: slower in int8", kind)}
    )
    return built.SerializeToString(), {f.name for f in plan.float_nodes}


def _runs_as_written(data: bytes) -> None:
    x = _x(4)
    got = make_session(data).run(None, {"x": x})[0]
    want = ReferenceEvaluator(onnx.load_from_string(data)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", [FloatKind.SPEED, FloatKind.ACCURACY])
def test_a_conv_kept_float_in_a_search_build_runs_float_in_onnx_runtime(kind: FloatKind) -> None:
    data, floats = _build(three_convs(), kind)
    assert floats == {"c1"}
    kernels = count_kernels(data)
    # c0 and c2 integer, c1 float: nothing fused back, and c1's reader stays int8
    assert kernels.int8["QLinearConv"] == 2 and kernels.all["Conv"] == 1
    _runs_as_written(data)


def test_without_its_own_dequantize_onnx_runtime_fuses_the_kept_conv_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure prevented, on the same graph: c1 planned float, c2 int8."""
    from quanta.graph import apply_qdq

    monkeypatch.setattr(apply_qdq, "float_inputs_apart", lambda *args: 0)
    data, floats = _build(three_convs())
    assert floats == {"c1"}
    assert count_kernels(data).int8["QLinearConv"] == 3  # c1 fused back
    x = _x(4)
    got = make_session(data).run(None, {"x": x})[0]
    want = ReferenceEvaluator(onnx.load_from_string(data)).run(None, {"x": x})[0]
    assert np.abs(got - want).max() > 1e-3  # not the float c1 the graph says


def test_a_relu_after_the_kept_node_does_not_let_it_fuse() -> None:
    """ONNX Runtime drops a Relu before a QuantizeLinear that clamps at 0, then would fuse the
    Conv before it as if the Relu were not there."""
    model = three_convs()
    model.graph.node.insert(2, helper.make_node("Relu", ["b"], ["b_relu"], name="act"))
    model.graph.node[3].input[0] = "b_relu"
    data, floats = _build(model)
    assert "c1" in floats and "c2" not in floats
    assert count_kernels(data).int8["QLinearConv"] == 2
    _runs_as_written(data)


@pytest.mark.parametrize("op", ["Tanh", "Sigmoid", "LeakyRelu"])
def test_other_ops_kept_float_keep_the_shared_dequantize(op: str) -> None:
    """No per-channel copy for other ops: ONNX Runtime has no integer Tanh, and it fuses a
    Sigmoid or LeakyRelu with a per-channel DequantizeLinear all the same, then fails to load
    ("X_scale must be a scalar"). The model written loads and runs as the graph says."""
    data, floats = _build(three_convs(op))
    assert floats == {"c1"}
    q = onnx.load_from_string(data)
    weights = {i.name for i in q.graph.initializer}
    activation_dqs = [
        n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in weights
    ]
    assert not any(a.name == "axis" for n in activation_dqs for a in n.attribute)
    assert count_kernels(data).int8["QLinearConv"] == 2
    make_session(data).run(None, {"x": _x(2)})


def test_int8_activations_keep_the_shared_dequantize() -> None:
    """On x86 ONNX Runtime runs int8 pairs as uint8 and would not convert a pair with a
    per-channel DequantizeLinear, so the int8 c0 would lose its kernel: left shared."""
    int8 = QuantizeConfig(min_fidelity=None, method="minmax", activation_type="int8")
    data, floats = _build(three_convs(), config=int8)
    assert floats == {"c1"}
    model = onnx.load_from_string(data)
    assert not any(n.name.endswith("_float_DQ") for n in model.graph.node)
