"""Range floors (quanta.graph.dead_zone): where every reader is flat, the grid needs no points."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.compact import expand_qdq
from quanta.graph.dead_zone import floored, range_floors
from quanta.quant import choose_qparams
from quanta.quant.qparams import qrange
from quanta.runtime import run_model


def _spelled_hard_swish(x: str, out: str) -> list[onnx.NodeProto]:
    """x * Clip(x + 3, 0, 6) / 6, as Paddle2ONNX writes HardSwish."""
    return [
        helper.make_node("Add", [x, "three"], [f"{x}_p3"], name=f"{x}_add"),
        helper.make_node("Clip", [f"{x}_p3", "zero", "six"], [f"{x}_gate"], name=f"{x}_clip"),
        helper.make_node("Mul", [x, f"{x}_gate"], [f"{x}_mul"], name=f"{x}_mul"),
        helper.make_node("Div", [f"{x}_mul", "six"], [out], name=f"{x}_div"),
    ]


def _model(act: str = "spelled") -> onnx.ModelProto:
    """Conv -> HardSwish (op or spelled out) -> Conv; the first Conv's bias pushes its output
    far below -3 on some channels, as BN-folded convolutions do."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", pads=[1] * 4)]
    if act == "spelled":
        nodes += _spelled_hard_swish("h", "a")
    else:
        nodes += [helper.make_node(act, ["h"], ["a"], name="act")]
    nodes += [helper.make_node("Conv", ["a", "w2", "b2"], ["y"], name="conv2")]
    inits = {
        "w1": rand(8, 3, 3, 3, seed=1),
        "b1": np.array([-12, -9, -6, 0, 1, -15, 2, -4], np.float32),
        "w2": rand(4, 8, 1, 1, seed=2),
        "b2": rand(4, seed=3),
        "three": np.array(3.0),
        "zero": np.array(0.0),
        "six": np.array(6.0),
    }
    return make_model(nodes, {"x": [None, 3, 8, 8]}, {"y": [None, 4, 8, 8]}, inits)


@pytest.mark.parametrize(
    ("act", "floor"), [("spelled", -3.0), ("HardSwish", -3.0), ("Relu", 0.0), ("Sigmoid", None)]
)
def test_floor_of_a_tensor_read_only_by_flat_ops(act: str, floor: float | None) -> None:
    # Sigmoid is never flat: no floor
    assert range_floors(_model(act)).get("h") == floor


def test_no_floor_when_one_reader_is_not_flat() -> None:
    model = _model()
    model.graph.output.append(helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, None))
    assert "h" not in range_floors(model)  # a graph output keeps every value


def test_floors_change_no_output() -> None:
    # oracle: onnx.reference with each floored tensor clamped to its floor first
    model = _model()
    floors = range_floors(model)
    assert floors["h"] == -3.0 and floors["h_p3"] == 0.0  # the gate's Clip: flat below 0
    clamped = onnx.ModelProto()
    clamped.CopyFrom(model)
    g = clamped.graph
    readers = [n for n in g.node if "h" in n.input]
    for n in readers:
        n.input[:] = ["h_floor" if i == "h" else i for i in n.input]
    g.initializer.append(onnx.numpy_helper.from_array(np.array(-3.0, np.float32), "minus3"))
    g.node.insert(1, helper.make_node("Max", ["h", "minus3"], ["h_floor"], name="floor"))
    x = rand(4, 3, 8, 8, seed=4, std=2.0)
    h = ReferenceEvaluator(model).run(None, {"x": x})
    assert (run_model(model, {"x": x})[0] is not None) and np.all(np.isfinite(h[0]))
    assert np.min(_first_conv(x)) < -3  # the clamp is active on these inputs
    np.testing.assert_allclose(
        ReferenceEvaluator(clamped).run(None, {"x": x})[0], h[0], rtol=0, atol=1e-6
    )


def _first_conv(x: np.ndarray) -> np.ndarray:
    model = _model()
    model.graph.output[0].name = "h"
    del model.graph.node[1:]
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def test_floored_grid_starts_at_the_floor() -> None:
    qp = choose_qparams(-20.0, 40.0, "uint8")
    out = floored(qp, -3.0)
    qmin, qmax = qrange("uint8")
    low = float(out.scale) * (qmin - int(out.zero_point))
    step = float(out.scale)
    assert -3.0 - step <= low <= -3.0  # the floor is on or just above the lowest point
    assert float(out.scale) < float(qp.scale) * 0.75  # 60/255 -> about 43.5/255
    assert float(out.scale) * (qmax - int(out.zero_point)) == pytest.approx(40.0, rel=0.01)
    assert floored(qp, None) is qp and floored(qp, -30.0) is qp  # no floor; floor below rmin
    per_channel = choose_qparams([-1.0, -5.0], [1.0, 5.0], "int8", axis=0)
    assert floored(per_channel, -0.5) is per_channel


def test_static_grid_floored_and_closer_to_float(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    x = rand(40, 3, 8, 8, seed=5, std=2.0)
    config = QuantizeConfig(min_fidelity=None, method="minmax", latency_check=False)

    def run(floors: bool) -> tuple[onnx.ModelProto, float]:
        if not floors:
            monkeypatch.setattr("quanta.graph.static.range_floors", lambda m: {})
        q = quantize_static(model, CalibrationData({"x": x[:32]}), config).model
        err = float(
            np.mean((run_model(q, {"x": x[32:]})[0] - run_model(model, {"x": x[32:]})[0]) ** 2)
        )
        return q, err

    q, with_floor = run(True)
    plain = expand_qdq(q)
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in plain.graph.initializer}
    (quant,) = [
        n for n in plain.graph.node if n.op_type == "QuantizeLinear" and n.input[0].startswith("h")
    ]
    scale, zero = float(consts[quant.input[1]]), int(consts[quant.input[2]])
    qmin = -128 if consts[quant.input[2]].dtype == np.int8 else 0
    assert -3.0 - scale <= scale * (qmin - zero) <= -3.0
    _, without = run(False)
    assert with_floor < without  # a finer grid where the values matter
