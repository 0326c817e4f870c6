"""Every node left float carries a typed reason kind; callers switch on it, never on the text."""

from __future__ import annotations

import pickle

from onnx import helper
from test_planner_pruning import residual_before
from tiny_graphs import make_model, rand

from quanta.graph.planner import plan_static
from quanta.graph.prepare import prepare
from quanta.graph.result import FloatKind, FloatNode, FloatReason


def test_planner_kinds() -> None:
    plan = plan_static(prepare(residual_before("Tanh")))
    kinds = {f.name: f.kind for f in plan.float_nodes}
    assert kinds["residual"] is FloatKind.UNREAD  # measured from the plan: a note
    # Tanh is kept float on purpose (quanta.opfacts), so a warning, not a note
    assert {f.op_type: f.kind for f in plan.float_nodes}["Tanh"] is FloatKind.BY_DESIGN


def test_unknown_op_and_handler_refusal_kinds() -> None:
    model = make_model(
        [
            helper.make_node("Gemm", ["x", "w", "c"], ["h"], name="fc", alpha=2.0),
            helper.make_node("Round", ["h"], ["y"], name="round"),
        ],
        {"x": ["N", 4]},
        {"y": ["N", 3]},
        {"w": rand(4, 3, seed=1), "c": rand(3, seed=2)},
    )
    kinds = {f.name: f.kind for f in plan_static(prepare(model)).float_nodes}
    assert kinds == {"fc": FloatKind.UNSUPPORTED, "round": FloatKind.NO_HANDLER}


def test_requested_and_given_reasons_keep_their_kind() -> None:
    model = prepare(residual_before("Tanh"))
    by_name = {f.name: f for f in plan_static(model, exclude=["proj"]).float_nodes}
    assert by_name["proj"].kind is FloatKind.REQUESTED
    speed = FloatReason("kept float for speed: measured", FloatKind.SPEED)
    by_name = {f.name: f for f in plan_static(model, exclude={"proj": speed}).float_nodes}
    assert by_name["proj"].kind is FloatKind.SPEED
    assert by_name["proj"].reason == "kept float for speed: measured"


def test_kind_survives_rewording_and_pickling() -> None:
    reason = FloatReason("any wording at all", FloatKind.ACCURACY)
    node = FloatNode("n", "Conv", reason)
    assert node.kind.measured  # the CLI prints it as a note whatever the text says
    again = pickle.loads(pickle.dumps(node))
    assert again.kind is FloatKind.ACCURACY and again.reason == "any wording at all"
    assert FloatNode("n", "Conv", "a handler's plain refusal").kind is FloatKind.UNSUPPORTED
    assert not FloatKind.BY_DESIGN.measured and not FloatKind.NO_HANDLER.measured
