"""The op facts table and every backend's registry agree (structural).

Each registry keyed by ONNX op type must hold exactly the ops whose facts name its backend: an op
that claims a TFLite handler has one, a handler whose op claims nothing is a forgotten entry.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from quanta.graph.ops import FLOAT_IS_FINE, KEPT_FLOAT, REGISTRY
from quanta.opfacts import FACTS, Backend, OpKind, ops_with, weight_axis
from quanta.ref.ops import KERNELS
from quanta.runtime.kernels import MOVERS
from quanta.tflite.ops import FLOAT_HANDLERS, HANDLERS

REGISTRIES = {
    Backend.STATIC: REGISTRY,
    Backend.REF: KERNELS,
    Backend.TFLITE: HANDLERS,
    Backend.TFLITE_FLOAT: FLOAT_HANDLERS,
}


@pytest.mark.parametrize("backend", list(REGISTRIES), ids=lambda b: b.name)
def test_each_registry_holds_exactly_the_ops_whose_facts_claim_it(backend: Backend) -> None:
    registry = set(REGISTRIES[backend])
    claimed = ops_with(backend)
    assert registry - claimed == set(), "handlers for ops whose facts do not name this backend"
    assert claimed - registry == set(), "ops whose facts name this backend but have no handler"


def test_every_registered_op_has_facts() -> None:
    registered = set().union(*REGISTRIES.values())
    assert registered - set(FACTS) == set()


def test_ops_with_weights_say_where_and_along_which_axis() -> None:
    for op, facts in FACTS.items():
        if facts.kind is OpKind.COMPUTE:
            assert facts.weight is not None, op
        if facts.weight is not None:
            assert facts.weight_axis is not None, op
        if Backend.WEIGHT_ONLY in facts.backends or Backend.DYNAMIC in facts.backends:
            assert facts.weight is not None, op
        if facts.bias is not None or facts.bias_correction_axis is not None:
            assert facts.kind is OpKind.COMPUTE, op


def test_ops_kept_float_on_purpose_have_no_int8_plan() -> None:
    for op, facts in FACTS.items():
        if facts.float_reason is not None:
            assert Backend.STATIC not in facts.backends, op
            assert facts.float_reason.startswith("kept float: "), op


def test_derived_sets() -> None:
    # what the planner stays quiet about, and what it explains
    assert {"Relu", "Clip", "Shape", "Identity"} <= FLOAT_IS_FINE
    assert not FLOAT_IS_FINE & set(REGISTRY)
    assert KEPT_FLOAT["Softmax"].startswith("kept float: its output is a probability")
    # ONNX Runtime's int8 movers: ONNX ops from the facts plus its own NHWC MaxPool
    assert {"MaxPool", "Reshape", "Concat", "Pad", "Identity", "NhwcMaxPool"} <= MOVERS
    assert "Conv" not in MOVERS


@pytest.mark.parametrize(("trans_b", "axis"), [(0, 1), (1, 0)])
def test_gemm_weight_axis_follows_trans_b(trans_b: int, axis: int) -> None:
    node = helper.make_node("Gemm", ["a", "b"], ["y"], transB=trans_b)
    assert weight_axis(node) == axis
    assert weight_axis(helper.make_node("Conv", ["x", "w"], ["y"])) == 0
    assert weight_axis(onnx.NodeProto(op_type="Relu")) is None
