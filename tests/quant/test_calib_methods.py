"""Range methods on histograms: golden cases, known distributions, real MSE, degenerate inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quanta.errors import QuantaError
from quanta.quant import (
    RANGE_METHODS,
    HistogramObserver,
    choose_qparams,
    entropy_range,
    fake_quantize,
    minmax_range,
    mse_range,
    percentile_range,
)

METHODS = list(RANGE_METHODS)


def observe(x: np.ndarray, bins: int = 2048, batches: int = 4) -> HistogramObserver:
    obs = HistogramObserver(bins=bins)
    for b in np.array_split(x, batches):
        obs.update(b)
    return obs


def real_mse(x: np.ndarray, lo: float, hi: float, dtype: str = "int8") -> float:
    """The squared error the quantized model really sees, through ``fake_quantize``."""
    x = x.astype(np.float32)
    return float(np.mean((fake_quantize(x, choose_qparams(lo, hi, dtype)) - x) ** 2))


def coverage(x: np.ndarray, lo: float, hi: float) -> float:
    return float(np.mean((x >= lo) & (x <= hi)))


@pytest.fixture(scope="module")
def gauss_with_outliers() -> np.ndarray:
    rng = np.random.default_rng(0)
    body = rng.standard_normal(1_000_000).astype(np.float32)
    return np.concatenate([body, np.array([-30.0, 25.0, 40.0], np.float32)])  # 3 far outliers


# -- golden: hand-computed histograms -----------------------------------------------------------

COUNTS = np.array([1.0, 98.0, 1.0])
EDGES = np.array([-100.0, -1.0, 1.0, 100.0])


def test_minmax_is_the_outer_edges_of_the_non_empty_bins() -> None:
    assert minmax_range(COUNTS, EDGES) == (-100.0, 100.0)
    # empty bins at either end are not data
    assert minmax_range([0.0, 0.0, 5.0, 0.0], [-3.0, -2.0, -1.0, 2.0, 4.0]) == (-1.0, 2.0)


def test_percentile_interpolates_inside_a_bin() -> None:
    # 99 %: cut 1 value per tail of 100, exactly the outer bins
    assert percentile_range(COUNTS, EDGES, percentile=99.0) == (-1.0, 1.0)
    # 99.5 %: cut 0.5 value per tail, half of each outer bin (uniform inside): -100 + 99 / 2
    assert percentile_range(COUNTS, EDGES, percentile=99.5) == pytest.approx((-50.5, 50.5))
    assert percentile_range(COUNTS, EDGES, percentile=100.0) == (-100.0, 100.0)


def test_percentile_of_a_one_sided_tensor_keeps_its_edge() -> None:
    relu = ([90.0, 5.0, 5.0], [0.0, 1.0, 2.0, 3.0])
    assert percentile_range(*relu, percentile=90.0)[0] == 0.0  # not the 10 % quantile (0.11)
    negative = ([5.0, 5.0, 90.0], [-3.0, -2.0, -1.0, 0.0])
    assert percentile_range(*negative, percentile=90.0)[1] == 0.0


def test_percentile_on_uniform_integers_with_one_huge_outlier() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.integers(0, 100, 200_000), [1_000_000]]).astype(np.float64)
    rng.shuffle(x)
    obs = observe(x)
    assert obs.range_for("minmax") == (0.0, 1_000_000.0)  # min-max includes the outlier
    lo, hi = obs.range_for("percentile")  # 99.999 %: 2 values per tail, the outlier is 1
    assert lo == 0.0 and hi < 1_000.0  # a one-sided tensor keeps rmin = min
    # NOTE: 2048 bins of 488 over [0, 1e6]: the body (0..99) is all in bin 0, so hi lies in it
    assert hi <= obs.bin_width


# -- entropy and mse on known distributions -----------------------------------------------------


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_gaussian_with_far_outliers_is_clipped(
    method: str, gauss_with_outliers: np.ndarray
) -> None:
    x = gauss_with_outliers
    obs = observe(x)
    lo, hi = obs.range_for(method)
    full = float(x.max() - x.min())
    # NOTE: mse trades 3 * (D - R)**2 of clipping for N * S**2 / 12 of rounding; with N = 1e6
    # and int8 the optimum keeps ~30 % of the span. Entropy stops at 255 bins (one bin a level).
    assert hi - lo < (0.2 if method == "entropy" else 0.4) * full
    assert coverage(x, lo, hi) >= 0.999
    assert real_mse(x, lo, hi) < real_mse(x, *obs.range_for("minmax"))


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_entropy_and_mse_keep_almost_all_of_a_uniform_range(method: str) -> None:
    x = np.random.default_rng(4).uniform(-1.0, 1.0, 200_000)
    lo, hi = observe(x).range_for(method)
    assert lo <= -0.99 and hi >= 0.99


def test_entropy_with_2048_bins_is_not_min_max_but_collapses_with_128() -> None:
    # ONNX Runtime's default 128 bins leave no candidate narrower than 255 levels: min-max
    x = np.random.default_rng(5).standard_t(4, 200_000)
    wide, narrow = observe(x, bins=2048), observe(x, bins=128)
    assert wide.range_for("entropy") != wide.range_for("minmax")
    assert narrow.range_for("entropy") == narrow.range_for("minmax")


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("method", METHODS)
def test_relu_tensor_keeps_rmin_at_zero(method: str, dtype: str) -> None:
    x = np.maximum(np.random.default_rng(6).standard_normal(200_000), 0.0)  # half exact zeros
    obs = observe(x)
    lo, hi = obs.range_for(method, dtype)
    assert lo == 0.0
    assert coverage(x, lo, hi) >= 0.999  # the zero spike does not drag entropy down


@pytest.mark.parametrize("method", METHODS)
def test_non_positive_tensor_keeps_rmax_at_zero(method: str) -> None:
    x = -np.maximum(np.random.default_rng(6).standard_normal(200_000), 0.0)
    lo, hi = observe(x).range_for(method)
    assert hi == 0.0 and coverage(x, lo, hi) >= 0.999


@pytest.mark.parametrize("method", METHODS)
def test_asymmetric_range_keeps_its_negative_side(method: str) -> None:
    # ONNX Runtime builds asymmetric ranges from a histogram of |x| and clips this to [0, T]
    x = np.random.default_rng(7).uniform(-1.0, 10.0, 200_000)
    lo, hi = observe(x).range_for(method)
    assert lo <= -0.9 and hi >= 9.5


def test_exact_zeros_are_not_smeared_over_their_bin() -> None:
    x = np.maximum(np.random.default_rng(8).standard_normal(200_000), 0.0)
    counts, edges = observe(x).histogram()
    zeros = float(np.sum(x == 0))
    # spread uniformly over bin 0, half the data looks badly quantized: entropy shrinks the range
    assert entropy_range(counts, edges)[1] < 0.9 * entropy_range(counts, edges, zero_count=zeros)[1]
    # for mse they cost S**2 / 12 each when smeared, nothing when exact: a range no narrower
    assert mse_range(counts, edges)[1] <= mse_range(counts, edges, zero_count=zeros)[1]


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(9).standard_t(3, 200_000),
        np.random.default_rng(10).laplace(size=200_000) ** 3,
        np.random.default_rng(11).lognormal(0.0, 1.0, 200_000),
    ],
    ids=["student-t3", "laplace-cubed", "lognormal"],
)
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4"])
def test_mse_range_beats_minmax_and_percentile_in_real_mse(x: np.ndarray, dtype: str) -> None:
    obs = observe(x)
    best = real_mse(x, *obs.range_for("mse", dtype), dtype)
    assert best <= real_mse(x, *obs.range_for("minmax", dtype), dtype)
    for p in (99.9, 99.99, 99.999):
        assert best <= real_mse(x, *obs.range_for("percentile", dtype, percentile=p), dtype)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_fast_at_2048_bins(method: str) -> None:
    obs = observe(np.random.default_rng(12).standard_t(3, 100_000))
    obs.range_for(method)  # warm up
    start = time.perf_counter()
    obs.range_for(method)
    # NOTE: about 20 ms on a laptop core; the bound only catches an accidental O(B^2) search
    assert time.perf_counter() - start < 0.5


# -- wide dtypes, degenerate and bad inputs -----------------------------------------------------


def test_int16_entropy_is_min_max_and_mse_stays_fast() -> None:
    x = np.random.default_rng(13).standard_normal(100_000)
    obs = observe(x)
    # more levels than bins: no candidate can be judged, so entropy keeps the full range
    assert obs.range_for("entropy", "int16") == obs.range_for("minmax")
    lo, hi = obs.range_for("mse", "int16")  # 65536 levels: the closed form S**2 / 12
    assert lo <= -4.0 and hi >= 4.0  # with 65536 levels clipping never pays on a Gaussian


@pytest.mark.parametrize("method", METHODS)
def test_single_bin_and_point_histograms(method: str) -> None:
    fn = RANGE_METHODS[method]
    assert fn([5.0], [2.0, 2.0]) == (2.0, 2.0)  # a point mass (a constant tensor)
    assert fn([0.0, 7.0, 0.0], [-1.0, 0.0, 0.0, 1.0]) == (0.0, 0.0)  # all zeros
    lo, hi = fn([4.0], [-1.0, 3.0])  # one bin: nothing to choose from
    assert -1.0 <= lo <= hi <= 3.0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("counts", "edges", "match"),
    [
        ([0.0, 0.0], [0.0, 1.0, 2.0], "histogram is empty"),
        ([1.0, 2.0], [0.0, 1.0], r"edges of shape \(B \+ 1,\)"),
        ([1.0, -2.0], [0.0, 1.0, 2.0], ">= 0"),
        ([1.0, 2.0], [0.0, 2.0, 1.0], "non-decreasing"),
        ([1.0, np.nan], [0.0, 1.0, 2.0], "finite"),
    ],
)
def test_bad_histograms_raise(method: str, counts: list, edges: list, match: str) -> None:
    with pytest.raises(QuantaError, match=match):
        RANGE_METHODS[method](counts, edges)


@st.composite
def histograms(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 300))
    counts = draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 0.0, 1.0, 3.0, 1e4])))
    if not counts.any():
        counts[draw(st.integers(0, n - 1))] = 1.0
    widths = draw(hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 1e-3, 0.5, 1.0, 7.0])))
    start = draw(st.floats(-100.0, 100.0))
    return counts, start + np.concatenate(([0.0], np.cumsum(widths)))


@settings(derandomize=True, database=None, deadline=None, max_examples=40)
@given(histograms(), st.sampled_from(["int8", "uint8", "int4"]))
def test_every_method_returns_a_finite_range_inside_the_data(
    hist: tuple[np.ndarray, np.ndarray], dtype: str
) -> None:
    counts, edges = hist
    nonzero = np.flatnonzero(counts)
    data_lo, data_hi = edges[nonzero[0]], edges[nonzero[-1] + 1]
    for method, fn in RANGE_METHODS.items():
        lo, hi = fn(counts, edges, dtype)
        assert np.isfinite([lo, hi]).all(), method
        assert data_lo <= lo <= hi <= data_hi, method
        qp = choose_qparams(lo, hi, dtype)
        assert np.isfinite(qp.scale) and float(qp.scale) > 0
