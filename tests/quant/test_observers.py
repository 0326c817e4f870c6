"""Observers: min-max = range of the concatenation, EMA by hand, NaN/Inf skipped and counted."""

from __future__ import annotations

import numpy as np
import pytest

from quanta.errors import QuantaError
from quanta.quant import MeanObserver, MinMaxObserver, MovingAverageMinMaxObserver, choose_qparams


def batches(shape: tuple[int, ...], n: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # a different spread per batch, so each batch moves the range
    return [(rng.normal(size=shape) * (i + 1) + i).astype(np.float32) for i in range(n)]


# -- min-max -----------------------------------------------------------------------------------


def test_minmax_per_tensor_equals_the_concatenation() -> None:
    xs = batches((8, 3, 5))
    obs = MinMaxObserver()
    for x in xs:
        obs.update(x)
    everything = np.concatenate(xs)
    lo, hi = obs.range()
    assert lo == everything.min() and hi == everything.max()
    assert obs.batches == len(xs) and obs.nonfinite == 0


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_minmax_per_channel_equals_the_concatenation(axis: int) -> None:
    xs = batches((4, 3, 5), seed=1)
    obs = MinMaxObserver(axis=axis)
    for x in xs:
        obs.update(x)
    everything = np.stack(xs)  # (n, 4, 3, 5): a new leading axis keeps every batch's channels
    reduce = tuple(i for i in range(everything.ndim) if i != (axis % 3) + 1)
    lo, hi = obs.range()
    np.testing.assert_array_equal(lo, everything.min(axis=reduce))
    np.testing.assert_array_equal(hi, everything.max(axis=reduce))
    assert lo.shape == (xs[0].shape[axis],)


def test_minmax_qparams_follow_choose_qparams() -> None:
    obs = MinMaxObserver()
    obs.update(np.array([0.5, -1.0], np.float32))
    obs.update(np.array([3.0, 2.0], np.float32))
    qp = obs.qparams("uint8")
    # [-1, 3] uint8: S = 4/255, Z = 64
    assert float(qp.scale) == float(np.float32(4 / 255)) and int(qp.zero_point) == 64
    sym = obs.qparams("int8", symmetric=True)
    assert float(sym.scale) == float(np.float32(3 / 127)) and int(sym.zero_point) == 0


def test_minmax_per_channel_qparams_are_per_axis() -> None:
    obs = MinMaxObserver(axis=0)
    obs.update(np.array([[-1.0, 3.0], [0.0, 6.0], [2.0, 5.0]], np.float32))  # (C=3, 2)
    qp = obs.qparams("int8")
    expected = choose_qparams([-1.0, 0.0, 2.0], [3.0, 6.0, 5.0], "int8", axis=0)
    assert qp.axis == 0
    np.testing.assert_array_equal(qp.scale, expected.scale)
    # [-1, 3] -> -64; [0, 6] -> -128; [2, 5] widened to [0, 5] -> -128
    assert qp.zero_point.tolist() == [-64, -128, -128]


def test_constant_batches_give_a_usable_scale() -> None:
    obs = MinMaxObserver()
    obs.update(np.full(10, 0.7, np.float32))
    qp = obs.qparams("int8")
    assert np.isfinite(qp.scale) and float(qp.scale) > 0
    obs = MinMaxObserver()
    obs.update(np.zeros(10, np.float32))
    assert float(obs.qparams("int8").scale) > 0


# -- non-finite values -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_nan_and_inf_are_skipped_and_counted(
    cls: type[MinMaxObserver] | type[MovingAverageMinMaxObserver],
) -> None:
    obs = cls()
    obs.update(np.array([1.0, np.nan, np.inf, -np.inf, -3.0], np.float32))
    lo, hi = obs.range()
    assert (lo, hi) == (-3.0, 1.0)
    assert obs.nonfinite == 3
    assert obs.batches == 1


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_all_nan_batch_changes_nothing_but_the_count(
    cls: type[MinMaxObserver] | type[MovingAverageMinMaxObserver],
) -> None:
    obs = cls()
    obs.update(np.array([-1.0, 3.0], np.float32))
    obs.update(np.full((2, 3), np.nan, np.float32))
    assert obs.range() == (-1.0, 3.0)
    assert obs.nonfinite == 6
    assert obs.batches == 1  # the all-NaN batch is not a batch of data
    qp = obs.qparams("uint8")
    assert np.isfinite(qp.scale) and int(qp.zero_point) == 64


def test_per_channel_nan_is_skipped_within_its_channel() -> None:
    obs = MinMaxObserver(axis=1)
    x = np.array([[np.nan, 5.0], [-2.0, np.inf], [1.0, -1.0]], np.float32)  # (3, C=2)
    obs.update(x)
    lo, hi = obs.range()
    assert lo.tolist() == [-2.0, -1.0] and hi.tolist() == [1.0, 5.0]
    assert obs.nonfinite == 2


def test_per_channel_minmax_survives_an_all_nan_batch() -> None:
    obs = MinMaxObserver(axis=0)
    obs.update(np.array([[-1.0, 2.0], [0.5, 4.0]], np.float32))
    obs.update(np.full((2, 2), np.nan, np.float32))
    lo, hi = obs.range()
    assert lo.tolist() == [-1.0, 0.5] and hi.tolist() == [2.0, 4.0]
    assert np.all(np.isfinite(obs.qparams("int8").scale))


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("decay", [0.5, 0.0])
def test_per_channel_moving_average_survives_an_all_nan_batch(decay: float) -> None:
    obs = MovingAverageMinMaxObserver(axis=0, decay=decay)
    x = np.array([[-1.0, 2.0], [0.5, 4.0]], np.float32)  # (C=2, 2)
    obs.update(x)
    obs.update(np.full((2, 2), np.nan, np.float32))
    obs.update(x)
    lo, hi = obs.range()
    # the all-NaN batch is skipped, so the EMA of two identical batches is that batch's range
    assert lo.tolist() == [-1.0, 0.5] and hi.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("axis", [None, 0])
@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_observer_that_saw_nothing_raises(
    cls: type[MinMaxObserver] | type[MovingAverageMinMaxObserver], axis: int | None
) -> None:
    obs = cls(axis=axis)
    with pytest.raises(QuantaError, match="saw no finite values"):
        obs.qparams()
    obs.update(np.zeros((0, 3), np.float32))  # an empty batch is still nothing
    with pytest.raises(QuantaError, match="saw no finite values"):
        obs.qparams()


@pytest.mark.parametrize("cls", [MinMaxObserver, MovingAverageMinMaxObserver])
def test_per_tensor_observer_that_saw_only_nan_raises(
    cls: type[MinMaxObserver] | type[MovingAverageMinMaxObserver],
) -> None:
    obs = cls()
    obs.update(np.full(4, np.nan, np.float32))
    obs.update(np.array([np.inf, -np.inf], np.float32))
    assert obs.nonfinite == 6 and obs.batches == 0
    with pytest.raises(QuantaError, match="feed it at least one calibration batch"):
        obs.qparams()


# -- moving average: ema = d * ema + (1 - d) * batch, the first batch initialises ---------------

B1 = np.array([-1.0, 0.5, 2.0], np.float32)  # range (-1, 2)
B2 = np.array([-3.0, 1.0], np.float32)  # range (-3, 1)
B3 = np.array([0.5, 4.0], np.float32)  # range (0.5, 4)


def test_moving_average_first_batch_initialises() -> None:
    obs = MovingAverageMinMaxObserver(decay=0.9)
    obs.update(B1)
    # not 0.9 * 0 + 0.1 * (-1): the first batch is taken as is
    assert obs.range() == (-1.0, 2.0)


def test_moving_average_by_hand_exact() -> None:
    obs = MovingAverageMinMaxObserver(decay=0.5)  # halves are exact in binary
    obs.update(B1)
    obs.update(B2)
    assert obs.range() == (-2.0, 1.5)  # 0.5 * -1 + 0.5 * -3, 0.5 * 2 + 0.5 * 1
    obs.update(B3)
    assert obs.range() == (-0.75, 2.75)  # 0.5 * -2 + 0.5 * 0.5, 0.5 * 1.5 + 0.5 * 4
    assert obs.batches == 3


def test_moving_average_by_hand_decay_0_9() -> None:
    obs = MovingAverageMinMaxObserver(decay=0.9)
    for b in (B1, B2, B3):
        obs.update(b)
    lo, hi = obs.range()
    # min: -1 -> 0.9 * -1 + 0.1 * -3 = -1.2 -> 0.9 * -1.2 + 0.1 * 0.5 = -1.03
    # max:  2 -> 0.9 *  2 + 0.1 *  1 =  1.9 -> 0.9 *  1.9 + 0.1 * 4   =  2.11
    assert lo == pytest.approx(-1.03, rel=1e-12)
    assert hi == pytest.approx(2.11, rel=1e-12)


def test_moving_average_decay_0_is_the_last_batch() -> None:
    obs = MovingAverageMinMaxObserver(decay=0.0)
    for b in (B1, B2, B3):
        obs.update(b)
    assert obs.range() == (0.5, 4.0)


def test_moving_average_per_channel() -> None:
    obs = MovingAverageMinMaxObserver(axis=1, decay=0.5)
    obs.update(np.array([[-1.0, 10.0], [2.0, 20.0]], np.float32))  # ch0 (-1, 2), ch1 (10, 20)
    obs.update(np.array([[-3.0, 0.0], [1.0, 30.0]], np.float32))  # ch0 (-3, 1), ch1 (0, 30)
    lo, hi = obs.range()
    assert lo.tolist() == [-2.0, 5.0] and hi.tolist() == [1.5, 25.0]


def test_moving_average_ignores_a_rare_outlier_that_minmax_keeps() -> None:
    ema, minmax = MovingAverageMinMaxObserver(decay=0.9), MinMaxObserver()
    for i in range(20):
        b = np.array([-1.0, 1.0 if i != 5 else 100.0], np.float32)
        ema.update(b)
        minmax.update(b)
    assert minmax.range()[1] == 100.0
    assert ema.range()[1] < 100.0 * 0.9**14 + 1.0  # the outlier decays by 0.9 per later batch


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_moving_average_rejects_bad_decay(decay: float) -> None:
    with pytest.raises(QuantaError, match=r"decay must be in \[0, 1\)"):
        MovingAverageMinMaxObserver(decay=decay)


# --- MeanObserver (bias correction's per-channel input means) ----------------------------


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_mean_observer_equals_the_float64_mean_of_all_batches(axis: int) -> None:
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((n, 3, 4, 5)).astype(np.float32) for n in (2, 1, 3)]
    obs = MeanObserver(axis=axis)
    for x in xs:
        obs.update(x)
    both = np.concatenate(xs).astype(np.float64)
    oracle = np.moveaxis(both, axis, -1).reshape(-1, both.shape[axis]).mean(axis=0)
    np.testing.assert_allclose(obs.mean(), oracle, rtol=1e-12)
    assert obs.count == both.size // both.shape[axis]


def test_mean_observer_drops_positions_holding_nan_or_inf() -> None:
    # (N=2, C=2, 2): position (n=0, w=1) holds a NaN in channel 0 and is dropped in every
    # channel; position (n=1, w=0) an Inf in channel 1
    x = np.array([[[1.0, np.nan], [10.0, 20.0]], [[3.0, 5.0], [np.inf, 40.0]]], np.float32)
    obs = MeanObserver(axis=1)
    obs.update(x)
    # left: (n=0, w=0) -> (1, 10) and (n=1, w=1) -> (5, 40)
    assert obs.count == 2
    np.testing.assert_array_equal(obs.mean(), [3.0, 25.0])
    obs.update(np.array([[[2.0, 4.0], [6.0, 8.0]]], np.float32))  # all finite: fast path
    assert obs.count == 4
    np.testing.assert_array_equal(obs.mean(), [(1 + 5 + 2 + 4) / 4, (10 + 40 + 6 + 8) / 4])
