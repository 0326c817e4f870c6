"""Accuracy-aware fallback: search_float_nodes (stub models), and quantize_static's
min_fidelity on a model with one node whose damage alone is by far the largest."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_graphs import make_model as tiny_model

from quanta.errors import InputError
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.fallback import search_float_nodes
from quanta.runtime import make_session, mean_cosine, run_model

OPSET = 20


def make_model(
    nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], width: int = 4
) -> onnx.ModelProto:
    return tiny_model(nodes, {"x": ["N", 8]}, {"y": ["N", width]}, inits, "fallback")


def rand(*shape: int, seed: int, std: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, std, shape).astype(np.float32)


# --- search_float_nodes on stub models ---------------------------------------------------------

# Each "node", when quantized, adds its error vector to the output y = x + sum(errors).
ERRORS = {
    "a": np.array([0.05, 0.0, 0.0, 0.0]),
    "b": np.array([0.0, 3.0, 0.0, 0.0]),  # by far the most damaging
    "c": np.array([0.0, 0.0, 0.5, 0.0]),
    "d": np.array([0.0, 0.0, 0.0, 0.01]),
}


def stub_build(exclude: dict[str, str]) -> onnx.ModelProto:
    error = sum((e for n, e in ERRORS.items() if n not in exclude), np.zeros(4))
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "err"], ["y"])],
        "stub",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(error.astype(np.float32), "err")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model


def stub_feeds() -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    x = np.abs(rand(16, 4, seed=2, std=1.0)) + 0.5
    return {"x": x}, [x.astype(np.float64)]


def test_search_keeps_the_most_damaging_node_first() -> None:
    feeds, reference = stub_feeds()
    steps: list[tuple[int, int]] = []
    result = search_float_nodes(
        stub_build, list(ERRORS), list(ERRORS), feeds, reference, target=0.98,
        on_step=lambda done, total: steps.append((done, total)),
    )  # fmt: skip
    assert list(result.kept_float) == ["b"]
    assert "quantizing it alone cost" in result.kept_float["b"]
    assert result.fidelity_before < 0.98 <= result.fidelity_after
    assert result.fidelity_after == pytest.approx(
        mean_cosine(run_model(stub_build({"b": ""}), feeds), reference)
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # one before, one per candidate ranked alone, one for the prefix ["b"]
    assert result.evaluations == 1 + 4 + 1


def test_search_target_met_at_the_start_changes_nothing() -> None:
    feeds, reference = stub_feeds()
    result = search_float_nodes(
        stub_build, list(ERRORS), list(ERRORS), feeds, reference, target=0.5
    )
    assert result.kept_float == {}
    assert result.fidelity_before == result.fidelity_after >= 0.5
    assert result.evaluations == 1


def test_search_respects_max_float_and_keeps_the_best_prefix() -> None:
    feeds, reference = stub_feeds()
    # Unreachable target: at most two nodes, in order of damage (b, then c).
    result = search_float_nodes(
        stub_build, list(ERRORS), list(ERRORS), feeds, reference, target=1.0, max_float=2
    )
    assert list(result.kept_float) == ["b", "c"]
    assert result.evaluations == 1 + 4 + 2


# --- quantize_static with min_fidelity -------------------------------------------------------


def sensitive_mlp() -> onnx.ModelProto:
    """x (N, 8) -> Gemm fc1 -> Relu -> Gemm fc2 -> y (N, 4); fc1 ignores feature 0."""
    w1 = rand(16, 8, seed=3)
    w1[:, 0] = 0.0  # feature 0 (the outlier channel) does not change the float output
    return make_model(
        [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1),
        ],
        {"w1": w1, "b1": rand(16, seed=4, std=0.1), "w2": rand(4, 16, seed=5),
         "b2": rand(4, seed=6, std=0.1)},
    )  # fmt: skip


def outlier_calibration() -> np.ndarray:
    x = rand(64, 8, seed=7, std=1.0)
    # A few huge values in one channel stretch fc1's int8 input range ~300x: every other
    # feature then falls on one of a handful of levels.
    x[::8, 0] = 1000.0
    return x


def config(min_fidelity: float | None) -> QuantizeConfig:
    return QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=min_fidelity)


def output_cosine(model: onnx.ModelProto, reference: onnx.ModelProto, x: np.ndarray) -> float:
    out = make_session(model.SerializeToString()).run(None, {"x": x})[0].astype(np.float64)
    ref = make_session(reference.SerializeToString()).run(None, {"x": x})[0].astype(np.float64)
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.mean())


def test_min_fidelity_keeps_the_sensitive_node_float() -> None:
    model = sensitive_mlp()
    data = CalibrationData({"x": outlier_calibration()})
    full = quantize_static(model, data, config(None))
    safe = quantize_static(model, data, config(0.999))
    assert not any("quantizing it alone cost" in f.reason for f in full.float_nodes)
    (kept,) = [f for f in safe.float_nodes if "quantizing it alone cost" in f.reason]
    assert (kept.name, kept.op_type) == ("fc1", "Gemm")
    # fc1 stays a float Gemm reading x itself: no QuantizeLinear on the graph input
    assert not any(
        n.op_type == "QuantizeLinear" and n.input[0] == "x" for n in safe.model.graph.node
    )
    assert any("with 1 node(s) kept float (target 0.999" in note for note in safe.notes)
    # Judged independently on unseen inputs, against the float model.
    x = rand(32, 8, seed=8, std=1.0)
    before, after = output_cosine(full.model, model, x), output_cosine(safe.model, model, x)
    assert before < 0.9  # fully int8 is badly off
    assert after > 0.999 and after > before


def test_min_fidelity_met_at_the_start_keeps_everything_int8() -> None:
    model = sensitive_mlp()
    data = CalibrationData({"x": rand(64, 8, seed=9, std=1.0)})  # no outliers
    result = quantize_static(model, data, config(0.9))
    assert result.float_nodes == []
    (note,) = [n for n in result.notes if n.startswith("fidelity on")]
    assert "fully int8 (target 0.9 met)" in note
    assert "kept float" not in note


def test_no_fidelity_note_without_min_fidelity() -> None:
    result = quantize_static(sensitive_mlp(), CalibrationData({"x": outlier_calibration()}),
                             config(None))  # fmt: skip
    assert not any(n.startswith("fidelity on") for n in result.notes)


def test_bias_correction_note_counts_the_final_model() -> None:
    result = quantize_static(sensitive_mlp(), CalibrationData({"x": outlier_calibration()}),
                             config(0.999))  # fmt: skip
    assert "bias correction applied to 1 layers" in result.notes


def test_max_float_caps_the_fallback() -> None:
    model = sensitive_mlp()
    data = CalibrationData({"x": outlier_calibration()})
    capped = quantize_static(
        model, data,
        QuantizeConfig(method="minmax", activation_type="int8", min_fidelity=0.999, max_float=0),
    )  # fmt: skip
    assert not any("quantizing it alone cost" in f.reason for f in capped.float_nodes)
    with pytest.raises(InputError, match="max-float"):
        QuantizeConfig(max_float=-1)
