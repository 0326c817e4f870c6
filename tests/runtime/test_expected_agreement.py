"""The expected per-position arg-max agreement: against an independent numerical integral on
two positions, against the counted agreement of many noisy positions (the event it predicts),
and on few samples that happen to show no change where one is likely."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quanta.runtime.expected_agreement import expected_argmax_agreement
from quanta.runtime.fidelity import argmax_agreement


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _keep(margins: list[float], s: float) -> float:
    """P(the best keeps its lead) when each class's score moves by its own N(0, s²) error: a
    plain Riemann sum over the best class's error (not the module's quadrature)."""
    e = np.linspace(-12 * s, 12 * s, 48001)
    density = np.exp(-0.5 * (e / s) ** 2) / (s * math.sqrt(2 * math.pi))
    inner = np.prod([[_phi((m + v) / s) for v in e] for m in margins], axis=0)
    return float(np.sum(density * inner) * (e[1] - e[0]))


def test_hand_computed_on_two_positions() -> None:
    ref = np.array([[[3.0, 1.0, 0.0], [0.0, 0.5, 0.2]]])  # (1, 2, 3)
    out = np.array([[[2.5, 1.5, 0.0], [0.0, 0.4, 0.2]]])
    # leads over the two rivals: (2.0, 3.0) and (0.3, 0.5); their changes (-1.0, -0.5) and
    # (-0.1, -0.1): common shifts -0.55 and -0.3, the rest (+-0.45, +-0.2) is spread, of
    # s = rms(rest) / sqrt(2) for each class's own error
    s = math.sqrt((2 * 0.45**2 + 2 * 0.2**2) / 4 / 2)
    expected = (_keep([2.0 - 0.55, 3.0 - 0.3], s) + _keep([0.3 - 0.55, 0.5 - 0.3], s)) / 2
    assert expected_argmax_agreement([out], [ref]) == pytest.approx(expected, abs=1e-6)
    # neither position changed class: counting reads perfect agreement
    assert argmax_agreement([out], [ref]) == 1.0


def test_identical_outputs_and_no_positions_agree_fully() -> None:
    ref = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert expected_argmax_agreement([ref], [ref]) == 1.0
    assert expected_argmax_agreement([], []) == 1.0


def test_a_shift_common_to_every_position_is_certain_not_noise() -> None:
    ref = np.zeros((16, 5, 4))
    ref[..., 0], ref[..., 1], ref[..., 3] = 1.0, 0.99, -3.0  # class 0 leads class 1 by 0.01
    far = ref.copy()
    far[..., 3] += 1.0  # a far class moves: no lead is lost
    assert expected_argmax_agreement([far], [ref]) == 1.0
    near = ref.copy()
    near[..., 0] -= 0.02  # the best falls behind the runner-up everywhere
    assert expected_argmax_agreement([near], [ref]) == 0.0 == argmax_agreement([near], [ref])


@pytest.mark.parametrize("noise", [0.05, 0.2])
def test_it_predicts_the_counted_agreement_of_many_noisy_positions(noise: float) -> None:
    # oracle: the share of positions whose arg-max survives noise, counted on 100,000 of them
    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 1.0, (1000, 100, 8))  # (N, T, C)
    out = ref + rng.normal(0.0, noise, ref.shape)
    counted = argmax_agreement([out], [ref])
    assert counted < 0.999  # some positions did change
    assert expected_argmax_agreement([out], [ref]) == pytest.approx(counted, abs=0.003)


def test_few_samples_that_happen_to_keep_every_position_still_read_a_miss() -> None:
    # 4 samples of 10 positions, scores 1.0 apart except one near-tie per sample; noise that
    # flips a near-tie about a third of the time did not flip any of these four
    rng = np.random.default_rng(3)
    ref = np.tile(np.arange(5, dtype=np.float64), (4, 10, 1))  # (4, 10, 5)
    ref[:, 0, 3] = 3.95  # class 4 leads class 3 by 0.05 at the first position
    out = ref + rng.normal(0.0, 0.03, ref.shape)
    out[:, 0, 4] = ref[:, 0, 4] + 0.01  # these four kept their lead
    out[:, 0, 3] = ref[:, 0, 3]
    assert argmax_agreement([out], [ref]) == 1.0
    score = min(argmax_agreement([out], [ref]), expected_argmax_agreement([out], [ref]))
    assert score < 1 - 0.05 / 10  # the target for 10 positions is missed
    assert expected_argmax_agreement([out], [ref]) < 0.999
