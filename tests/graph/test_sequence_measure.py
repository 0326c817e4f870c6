"""Held-out fidelity of a class-score sequence (a CTC reader's head): per-position arg-max
agreement beside the mean cosine, driving the accuracy-aware fallback when it misses, and not
applied to outputs that are not class scores."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tiny_graphs import make_model, rand

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.fallback import search_float_nodes
from quanta.graph.measures import class_sequence_outputs, sequence_measure
from quanta.runtime import run_model
from quanta.runtime.fidelity import argmax_agreement

T, K, H, C = 6, 8, 16, 4


def sequence_model(head: str = "Softmax", bias: bool = True) -> onnx.ModelProto:
    """x (N, T, K) -> MatMul -> Relu -> MatMul [-> Add bias] -> ``head`` -> y (N, T, C).

    Classes 0 and 1 have nearly the same weight column (0.004 apart), so rounding the second
    MatMul's weights to int8 swaps them at many positions while the scores, and so the cosine,
    barely move: what a CTC reader's user sees (other characters) and the cosine hides."""
    base = rand(H, 1, seed=2)
    w2 = np.concatenate(
        [base, base + 0.004 * rand(H, 1, seed=3), rand(H, C - 2, seed=4) - 2.0], axis=1
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["z" if not bias else "l"], name="mm2"),
    ]
    inits = {"w1": rand(K, H, seed=1), "w2": w2}
    if bias:
        nodes.append(helper.make_node("Add", ["l", "b"], ["z"], name="bias"))
        inits["b"] = np.zeros(C, np.float32)
    nodes.append(helper.make_node(head, ["z"], ["y"], name="head"))
    return make_model(nodes, {"x": ["N", T, K]}, {"y": ["N", T, C]}, inits, "sequence")


def data() -> CalibrationData:
    return CalibrationData({"x": rand(160, T, K, seed=5, std=1.0)})


CONFIG = QuantizeConfig(min_fidelity=0.997, latency_check=False)


def test_argmax_agreement_counts_positions_over_the_last_axis() -> None:
    ref = np.zeros((2, 3, 4))
    ref[..., 1] = 1.0  # class 1 everywhere
    out = ref.copy()
    out[0, 2] = [0.0, 0.0, 2.0, 0.0]  # one position of six changes class
    assert argmax_agreement([out], [ref]) == pytest.approx(5 / 6)
    assert argmax_agreement([ref], [ref]) == 1.0


def test_the_rule_finds_a_classifier_head_and_its_target_follows_the_text_bar() -> None:
    feeds = {"x": rand(4, T, K, seed=6)}
    for head in ("Softmax", "LogSoftmax", "Identity"):
        model = sequence_model(head)
        reference = run_model(model, feeds)
        assert class_sequence_outputs(model, reference) == [0], head
    # Paddle2ONNX writes the class axis of a (N, T, C) Softmax as 2 (rapidocr_rec)
    explicit = sequence_model("Softmax")
    explicit.graph.node[-1].attribute.extend([helper.make_attribute("axis", 2)])
    assert class_sequence_outputs(explicit, run_model(explicit, feeds)) == [0]
    # an old-opset Softmax as upgraded: Flatten -> Softmax(-1) -> Reshape back to (N, T, C)
    upgraded = sequence_model("Identity")
    upgraded.graph.node[-1].output[0] = "z2"
    upgraded.graph.node.extend(
        [
            helper.make_node("Flatten", ["z2"], ["f"], axis=2),
            helper.make_node("Softmax", ["f"], ["s"], axis=-1),
            helper.make_node("Reshape", ["s", "shape"], ["y"]),
        ]
    )
    upgraded.graph.initializer.append(
        numpy_helper.from_array(np.array([-1, T, C], np.int64), "shape")
    )
    assert class_sequence_outputs(upgraded, run_model(upgraded, feeds)) == [0]
    many = {"x": rand(24, T, K, seed=7)}
    measure = sequence_measure(sequence_model(), run_model(sequence_model(), many), 24)
    assert measure is not None
    # 24 samples of 6 positions: one change in 20 sequences (1.2 changes) less half a change
    # for the noise of so small a count: 0.7 of 144 positions
    assert measure.target == pytest.approx(1 - 0.7 / (24 * T))
    # 4 samples: 0.2 changes would be less than half a change; half the bar, 0.1, is allowed
    measure = sequence_measure(sequence_model(), run_model(sequence_model(), feeds), 4)
    assert measure is not None and measure.target == pytest.approx(1 - 0.1 / (4 * T))


def test_the_rule_does_not_fire_on_outputs_that_are_not_class_scores() -> None:
    feeds = {"x": rand(4, T, K, seed=6)}
    # a Sigmoid map (DB text detection, a VAD probability), a Relu feature map
    for head in ("Sigmoid", "Relu"):
        model = sequence_model(head)
        assert class_sequence_outputs(model, run_model(model, feeds)) == [], head
    # a rank-2 classifier (one answer per sample): judged by the cosine as before
    flat = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["z"], name="mm"),
            helper.make_node("Softmax", ["z"], ["y"], name="head"),
        ],
        {"x": ["N", K]},
        {"y": ["N", C]},
        {"w": rand(K, C, seed=1)},
    )
    assert class_sequence_outputs(flat, run_model(flat, {"x": rand(4, K, seed=6)})) == []
    # a Softmax over another axis than the last is not read as a class axis
    other = sequence_model("Softmax")
    other.graph.node[-1].attribute.extend([helper.make_attribute("axis", 1)])
    assert class_sequence_outputs(other, run_model(other, feeds)) == []


def test_argmax_miss_while_cosine_passes_drives_the_fallback() -> None:
    result = quantize_static(sequence_model(), data(), CONFIG)
    report = result.fidelity
    assert report is not None and report.agreement is not None
    assert report.before >= 0.997  # the cosine alone would have kept everything int8
    assert report.agreement_before is not None and report.agreement_target is not None
    assert report.agreement_before < report.agreement_target  # but positions changed class
    # the fallback kept the swapping MatMul float, and the written model meets both targets
    assert "mm2" in {f.name for f in result.float_nodes}
    assert report.met and report.kept_float >= 1 and report.missed == ""
    assert report.agreement >= report.agreement_target
    assert report.summary().startswith("fidelity targets met: mean output cosine to float ")
    assert any("per-position argmax agreement" in n for n in result.notes)
    # checked against ONNX Runtime on fresh samples: the model written agrees where the fully
    # int8 one does not
    fresh = {"x": rand(64, T, K, seed=9, std=1.0)}
    reference = run_model(sequence_model(), fresh)
    no_fallback = quantize_static(
        sequence_model(), data(), QuantizeConfig(min_fidelity=None, latency_check=False)
    )
    assert argmax_agreement(run_model(no_fallback.model, fresh), reference) < 0.95
    assert argmax_agreement(run_model(result.model, fresh), reference) > 0.99


def test_a_missed_agreement_is_named_in_the_line_and_the_json() -> None:
    config = QuantizeConfig(min_fidelity=0.997, latency_check=False, max_float=0)
    report = quantize_static(sequence_model(), data(), config).fidelity
    assert report is not None and not report.met
    assert report.missed == "per-position argmax agreement"
    line = report.summary()
    assert line.startswith("fidelity target not met (per-position argmax agreement): ")
    fields = report.as_dict()
    assert fields["missed"] == "per-position argmax agreement" and fields["met"] is False
    assert isinstance(fields["agreement"], float) and fields["agreement"] < 0.99


def test_beyond_the_search_bound_the_agreement_is_reported_not_chased(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model with more candidate layers than ``MAX_SEARCHED_FOR_ALSO``: the agreement is
    measured and named as missed, nothing is kept float for it, and a note says why."""
    from quanta.graph import fidelity_search

    monkeypatch.setattr(fidelity_search, "MAX_SEARCHED_FOR_ALSO", 1)
    result = quantize_static(sequence_model(), data(), CONFIG)
    report = result.fidelity
    assert report is not None and report.agreement is not None and not report.met
    assert report.missed == "per-position argmax agreement" and report.kept_float == 0
    assert report.agreement_before == report.agreement < report.agreement_target
    assert any(n.startswith("per-position argmax agreement not searched for: ") for n in
               result.notes)  # fmt: skip


def test_a_sigmoid_map_keeps_the_cosine_alone() -> None:
    """The same model ending in Sigmoid (a probability map, no class axis): no agreement is
    measured, the cosine is met, nothing is kept float for accuracy."""
    result = quantize_static(sequence_model("Sigmoid"), data(), CONFIG)
    report = result.fidelity
    assert report is not None and report.agreement is None and report.met
    assert report.kept_float == 0 and "mm2" not in {f.name for f in result.float_nodes}
    assert report.summary().startswith("fidelity target 0.997 met: ")


# --- search_float_nodes with a further measure, on stub models ---------------------------------


def stub_reference() -> np.ndarray:
    """(16, 5, 4) scores: class 0 leads class 1 by 0.01 everywhere; class 3 is large."""
    ref = np.zeros((16, T - 1, C))
    ref[..., 0], ref[..., 1], ref[..., 3] = 1.0, 0.99, -3.0
    return ref


STUB_ERRORS = {
    "loud": np.array([0.0, 0.0, 0.0, 1.0]),  # moves the cosine most, never the arg-max
    "flip": np.array([-0.02, 0.0, 0.0, 0.0]),  # swaps classes 0 and 1 at every position
}


def stub_build(exclude: dict[str, str]) -> onnx.ModelProto:
    error = sum((e for n, e in STUB_ERRORS.items() if n not in exclude), np.zeros(C))
    return make_model(
        [helper.make_node("Add", ["x", "err"], ["y"], name="add")],
        {"x": ["N", T - 1, C]},
        {"y": ["N", T - 1, C]},
        {"err": error.astype(np.float32)},
    )


def test_nodes_are_ranked_by_the_measure_they_damage_most() -> None:
    ref = stub_reference()
    feeds = {"x": ref.astype(np.float32)}
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="head")],
        {"x": ["N", T - 1, C]},
        {"y": ["N", T - 1, C]},
        {"w": np.eye(C, dtype=np.float32)},
    )
    measure = sequence_measure(model, [ref], 16)
    assert measure is not None
    result = search_float_nodes(
        stub_build, list(STUB_ERRORS), list(STUB_ERRORS), feeds, [ref],
        target=0.9, max_float=1, also=[measure],
    )  # fmt: skip
    # the cosine alone ranks "loud" first (and keeping it float would fix nothing); the
    # agreement's headroom ranks "flip" first, and keeping it float meets both targets
    assert list(result.kept_float) == ["flip"]
    assert result.also_before[measure.name] == 0.0
    assert result.also_after[measure.name] == 1.0
    assert "of its per-position argmax agreement" in result.kept_float["flip"]
