"""fidelity() and mean_cosine(): golden values on hand-computed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quanta.runtime import Fidelity, fidelity, mean_cosine
from quanta.runtime.fidelity import are_probabilities


def test_identical_outputs() -> None:
    ref = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], np.float32)
    f = fidelity(ref.copy(), ref)
    assert f.samples == 2
    assert f.cosine_mean == pytest.approx(1.0) and f.cosine_min == pytest.approx(1.0)
    assert f.top1_agreement == 1.0
    assert f.max_abs_error == 0.0
    assert f.sqnr_db == math.inf  # no noise at all
    d = f.as_dict()
    assert d["sqnr_db"] is None  # JSON has no infinity
    assert d["top1_agreement"] == 1.0 and d["cosine_mean"] == 1.0 and d["max_abs_error"] == 0.0
    assert set(d) == {
        "samples", "top1_agreement", "top1_agreement_confident", "confident_samples",
        "cosine_mean", "cosine_min", "max_abs_error", "sqnr_db",
    }  # fmt: skip


def test_one_flipped_argmax_of_two() -> None:
    ref = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 1.9]])
    out = np.array([[3.0, 0.0, 0.0], [0.0, 1.9, 2.0]])  # sample 1: argmax 1 -> 2
    f = fidelity(out, ref)
    assert f.top1_agreement == 0.5
    # sample 0 softmax top prob e^3/(e^3+2) = 0.909: confident; sample 1: e^2/(1+e^2+e^1.9)
    # = 0.4754 < 0.5: not confident, so its flip is a coin toss and does not count
    assert f.confident_samples == 1
    assert f.top1_agreement_confident == 1.0
    assert f.max_abs_error == pytest.approx(0.1)


def test_confident_subset_uses_softmax_top_probability() -> None:
    # top-1 probability of [a, 0]: 1 / (1 + e^-a); >= 0.5 for any a >= 0 with two classes, so
    # three classes: [a, 0, 0] has top prob e^a / (e^a + 2), >= 0.5 iff a >= ln 2 = 0.693.
    ref = np.array([[0.6, 0.0, 0.0], [0.8, 0.0, 0.0], [0.7, 0.0, 0.0]])
    out = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.0]])
    f = fidelity(out, ref)
    # sample 0 (0.477, not confident) and sample 1 (0.527, confident) flip; sample 2 (0.502,
    # just confident) agrees
    assert f.top1_agreement == pytest.approx(1 / 3)
    assert f.confident_samples == 2
    assert f.top1_agreement_confident == pytest.approx(0.5)


def test_no_confident_sample_gives_none() -> None:
    ref = np.array([[0.1, 0.0, 0.0, 0.0]])  # top prob 0.27
    f = fidelity(ref, ref)
    assert f.confident_samples == 0
    assert f.top1_agreement_confident is None
    assert f.as_dict()["top1_agreement_confident"] is None


def test_sqnr_of_known_noise() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 1.0, (4, 8))
    noise = rng.normal(0.0, 0.01, (4, 8))
    f = fidelity(ref + noise, ref)
    want = 10 * np.log10((ref**2).sum() / (noise**2).sum())
    assert f.sqnr_db == pytest.approx(want, rel=1e-9)
    assert 35.0 < f.sqnr_db < 45.0  # noise 100x smaller in amplitude: ~40 dB
    assert f.max_abs_error == pytest.approx(np.abs(noise).max())


def test_sqnr_hand_computed() -> None:
    ref = np.array([[3.0, 4.0]])  # signal 25
    out = np.array([[3.0, 4.5]])  # noise 0.25
    assert fidelity(out, ref).sqnr_db == pytest.approx(20.0)  # 10 log10(100)


def test_cosine_min_picks_the_worst_sample() -> None:
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    out = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    f = fidelity(out, ref, classifier=False)
    # per sample: 1, 1/sqrt(2), 0
    assert f.cosine_min == pytest.approx(0.0)
    assert f.cosine_mean == pytest.approx((1.0 + 1 / math.sqrt(2)) / 3)


def test_cosine_flattens_each_sample() -> None:
    ref = np.zeros((2, 2, 3))
    ref[:, 0, 0] = 1.0
    out = ref.copy()
    out[1] = 0.0
    out[1, 1, 2] = 5.0  # sample 1 orthogonal once flattened
    f = fidelity(out, ref)
    assert f.cosine_min == pytest.approx(0.0) and f.cosine_mean == pytest.approx(0.5)
    assert f.top1_agreement is None  # 3-D: not a classifier output


def test_classifier_detection_and_override() -> None:
    logits = np.array([[1.0, 2.0], [3.0, 0.0]])
    assert fidelity(logits, logits).top1_agreement == 1.0
    scalar = np.array([[1.0], [2.0]])  # one column: a regression output
    assert fidelity(scalar, scalar).top1_agreement is None
    f = fidelity(logits, logits, classifier=False)
    assert f.top1_agreement is None and f.confident_samples == 0
    embeddings = np.ones((2, 3, 4))
    assert fidelity(embeddings, embeddings, classifier=True).top1_agreement == 1.0


def test_zero_output_against_nonzero_reference_is_not_perfect() -> None:
    ref = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]])
    out = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert fidelity(out, ref, classifier=False).cosine_min < 1.0


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differs from reference shape"):
        fidelity(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        fidelity(np.zeros((3, 4)), np.zeros((2, 4)))


def test_as_dict_rounds_to_six_digits() -> None:
    f = Fidelity(
        samples=3, top1_agreement=1 / 3, top1_agreement_confident=None, confident_samples=0,
        cosine_mean=0.123456789, cosine_min=-0.5, max_abs_error=2.0, sqnr_db=12.3456789,
    )  # fmt: skip
    assert f.as_dict() == {
        "samples": 3, "top1_agreement": 0.333333, "top1_agreement_confident": None,
        "confident_samples": 0, "cosine_mean": 0.123457, "cosine_min": -0.5,
        "max_abs_error": 2.0, "sqnr_db": 12.345679,
    }  # fmt: skip


def test_bench_reports_top1_only_for_class_scores() -> None:
    from quanta.runtime.bench import EvalSet, _is_classifier

    emb = np.zeros((4, 384), np.float32)
    unlabelled = EvalSet({"x": emb}, None, "test")
    labelled = EvalSet({"x": emb}, np.zeros(4, np.int64), "test")
    assert not _is_classifier("sentence_embedding", emb, unlabelled)  # an embedding
    assert _is_classifier("logits", emb, unlabelled)  # named as class scores
    assert _is_classifier("output", emb, labelled)  # the data has labels
    assert not _is_classifier("logits", np.zeros((4, 1), np.float32), labelled)  # one column


def _rand(*shape: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.5, shape).astype(np.float32)


# --- mean_cosine: golden ---------------------------------------------------------------------


def test_mean_cosine_identical_is_one() -> None:
    a = _rand(3, 5, seed=0)
    assert mean_cosine([a], [a.copy()]) == pytest.approx(1.0)


def test_mean_cosine_hand_computed() -> None:
    out = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    # per sample: 1 (same), 0 (orthogonal), 1/sqrt(2) (45 degrees)
    assert mean_cosine([out], [ref]) == pytest.approx((1.0 + 0.0 + 1 / np.sqrt(2)) / 3)


def test_mean_cosine_is_scale_invariant_and_sign_sensitive() -> None:
    ref = _rand(4, 6, seed=1)
    assert mean_cosine([3.0 * ref], [ref]) == pytest.approx(1.0)
    assert mean_cosine([-ref], [ref]) == pytest.approx(-1.0)


def test_mean_cosine_flattens_each_sample() -> None:
    ref = np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]])  # (2, 2, 2)
    out = np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [2.0, 0.0]]])
    # sample 0 identical (1), sample 1 orthogonal once flattened (0)
    assert mean_cosine([out], [ref]) == pytest.approx(0.5)


def test_mean_cosine_averages_over_outputs() -> None:
    same = np.array([[1.0, 2.0]])
    opposite = np.array([[-1.0, -2.0]])
    # output 0: cosine 1, output 1: cosine -1 -> mean 0
    assert mean_cosine([same, opposite], [same, same]) == pytest.approx(0.0)


def test_mean_cosine_two_zero_vectors_count_as_identical() -> None:
    zero = np.zeros((1, 3))
    assert mean_cosine([zero], [zero]) == 1.0


def test_mean_cosine_zero_output_against_nonzero_reference_is_not_perfect() -> None:
    out = np.zeros((1, 3))
    ref = np.array([[1.0, 2.0, 3.0]])
    assert mean_cosine([out], [ref]) < 1.0


def test_mean_cosine_output_count_mismatch_raises() -> None:
    a = np.ones((1, 2))
    with pytest.raises(ValueError):
        mean_cosine([a, a], [a])


def test_softmax_outputs_are_not_softmaxed_again() -> None:
    # ten classes, rows already probabilities: top 0.9 (confident) and 0.4 (not). Softmaxed
    # again, the 0.9 row's top would be e^0.9 / (e^0.9 + 9 e^0.011) = 0.21: never confident.
    ref = np.full((2, 10), 0.1 / 9)
    ref[0, 0], ref[1, 0] = 0.9, 0.4
    ref[1, 1:] = 0.6 / 9
    out = ref.copy()
    assert are_probabilities(ref) and not are_probabilities(ref * 2)
    f = fidelity(out, ref)
    assert (f.confident_samples, f.top1_agreement_confident) == (1, 1.0)
    forced = fidelity(out, ref, probabilities=False)  # what was reported before: "—"
    assert (forced.confident_samples, forced.top1_agreement_confident) == (0, None)


def test_sigmoid_outputs_are_read_as_probabilities_when_told() -> None:
    ref = np.array([[0.7, 0.6, 0.1], [0.3, 0.2, 0.1]])  # independent sigmoids: rows sum != 1
    assert not are_probabilities(ref)
    f = fidelity(ref, ref, classifier=True, probabilities=True)
    assert f.confident_samples == 1  # 0.7 >= 0.5; 0.3 is not
