"""The sequence measure scores the lower of the counted and the expected per-position arg-max
agreement (``quanta.runtime.expected_agreement``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_sequence_measure import T, sequence_model
from tiny_graphs import rand

from quanta.graph.measures import sequence_measure
from quanta.runtime import run_model
from quanta.runtime.expected_agreement import expected_argmax_agreement
from quanta.runtime.fidelity import argmax_agreement


def test_the_sequence_measure_scores_the_lower_of_the_two() -> None:
    model = sequence_model()
    feeds = {"x": rand(4, T, 8, seed=6)}
    reference = run_model(model, feeds)
    measure = sequence_measure(model, reference, 4)
    assert measure is not None
    rng = np.random.default_rng(1)
    noisy = [r + rng.normal(0.0, 0.02, r.shape).astype(r.dtype) for r in reference]
    counted = argmax_agreement(noisy, reference)
    expected = expected_argmax_agreement(noisy, reference)
    assert expected != counted
    assert measure.score(noisy, reference) == pytest.approx(min(counted, expected))
    assert measure.score(reference, reference) == 1.0
