"""HistogramObserver: exact re-binning, streaming vs one shot, merge, O(bins) memory, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quanta.errors import QuantaError
from quanta.quant import RANGE_METHODS, HistogramObserver, choose_qparams, fake_quantize

# derandomize: the same examples on every run and machine; no database written into the repo
FAST = settings(derandomize=True, database=None, deadline=None, max_examples=60)
METHODS = list(RANGE_METHODS)


def streamed(xs: list[np.ndarray], bins: int = 2048) -> HistogramObserver:
    obs = HistogramObserver(bins=bins)
    for x in xs:
        obs.update(x)
    return obs


def exact_counts(obs: HistogramObserver, x: np.ndarray) -> np.ndarray:
    """Every value of ``x`` binned directly onto ``obs``'s current grid."""
    idx = np.floor((x.astype(np.float64) - obs.hist_min) / obs.bin_width)
    return np.bincount(np.clip(idx, 0, obs.bins - 1).astype(np.intp), minlength=obs.bins)


def near_an_edge(obs: HistogramObserver, x: np.ndarray) -> int:
    """Values within float64 rounding of an edge: the one place binning orders may disagree."""
    pos = (x.astype(np.float64) - obs.hist_min) / obs.bin_width
    return int(np.sum(np.abs(pos - np.rint(pos)) < 1e-9 * max(1.0, float(np.max(np.abs(pos))))))


def interp_cdf(obs: HistogramObserver, at: np.ndarray) -> np.ndarray:
    counts, edges = obs.histogram()
    return np.interp(at, edges, np.concatenate(([0.0], np.cumsum(counts))))


# -- golden: the first grid and one growth, by hand ----------------------------------------------


def test_first_batch_spans_its_range_and_growth_sums_whole_bins() -> None:
    obs = HistogramObserver(bins=4)
    obs.update(np.array([0.0, 1.0, 2.0, 3.0]))
    # [0, 3] in 4 bins of 0.75: 0 -> 0, 1 -> 1 (1.33), 2 -> 2 (2.67), 3 -> 3 (the top edge)
    assert (obs.hist_min, obs.bin_width) == (0.0, 0.75)
    assert obs.counts.tolist() == [1, 1, 1, 1]
    obs.update(np.array([-3.0]))
    # 4 old bins added below (m = 4) and k = 2: new bin (i + 4) // 2, edges -3, -1.5, 0, 1.5, 3
    assert (obs.hist_min, obs.bin_width) == (-3.0, 1.5)
    assert obs.counts.tolist() == [1, 0, 2, 2]
    assert obs.range() == (-3.0, 3.0)


def test_growth_at_the_top_keeps_the_origin() -> None:
    obs = HistogramObserver(bins=4)
    obs.update(np.array([0.0, 4.0]))  # bins of 1; 4.0, the top edge, is in the last bin [3, 4]
    assert obs.counts.tolist() == [1, 0, 0, 1]
    obs.update(np.array([7.5]))
    # covering [0, 7.5] with k = 2 from 0: bins of 2 -> [0, 2), [2, 4), [4, 6), [6, 8)
    assert (obs.hist_min, obs.bin_width) == (0.0, 2.0)
    assert obs.counts.tolist() == [1, 1, 0, 1]


# -- re-binning is exact: counts = all the data binned onto the final grid -----------------------


batch_lists = st.lists(
    st.tuples(
        st.integers(1, 300),  # size
        st.floats(1e-3, 1e3),  # spread
        st.floats(-1e3, 1e3),  # offset
        st.integers(0, 2**32 - 1),  # seed
    ),
    min_size=1,
    max_size=8,
)


def make_batches(spec: list[tuple[int, float, float, int]]) -> list[np.ndarray]:
    return [
        (np.random.default_rng(seed).standard_normal(n) * spread + offset).astype(np.float32)
        for n, spread, offset, seed in spec
    ]


@FAST
@given(batch_lists, st.sampled_from([2, 7, 64, 2048]))
def test_streamed_histogram_is_the_exact_histogram_on_its_grid(
    spec: list[tuple[int, float, float, int]], bins: int
) -> None:
    xs = make_batches(spec)
    everything = np.concatenate(xs)
    obs = streamed(xs, bins)
    assert obs.counts.shape == (bins,)
    assert obs.counts.sum() == everything.size  # total count preserved exactly
    assert obs.range() == (everything.min(), everything.max())  # min/max exact
    if everything.min() == everything.max():
        return
    # NOTE: summing whole old bins never splits a count: only a value within float64 rounding
    # of an edge can land one bin off (binned before vs after a growth).
    moved = np.abs(obs.counts - exact_counts(obs, everything)).sum() / 2
    assert moved <= near_an_edge(obs, everything)
    # resolution: at most about twice the one-shot width (max - min) / bins
    span = float(everything.max()) - float(everything.min())
    assert obs.bin_width <= 2 * span / (bins - 1) * (1 + 1e-9)


def test_streamed_is_close_to_one_shot() -> None:
    rng = np.random.default_rng(0)
    xs = [(rng.standard_normal(20_000) * (1 + i) + i).astype(np.float32) for i in range(6)]
    many, one = streamed(xs), streamed([np.concatenate(xs)])
    assert many.range() == one.range()
    assert many.counts.sum() == one.counts.sum()
    # NOTE: the grids differ (streamed bins are up to ~2x wider); each interpolated CDF is within
    # one of its own bins' mass of the empirical CDF, so the two differ by at most the sum.
    _, e_many = many.histogram()
    _, e_one = one.histogram()
    at = np.union1d(e_many, e_one)
    tol = many.counts.max() + one.counts.max()
    assert np.max(np.abs(interp_cdf(many, at) - interp_cdf(one, at))) <= tol
    # ... and each quantile moves by less than one bin of either grid
    for method in ("percentile", "minmax"):
        for a, b in zip(many.range_for(method), one.range_for(method), strict=True):
            assert abs(a - b) <= many.bin_width + one.bin_width


def test_memory_stays_at_bins_entries() -> None:
    rng = np.random.default_rng(1)
    obs = HistogramObserver(bins=2048)
    widths = set()
    for i in range(200):  # 2 million values, the range growing as it goes
        obs.update(rng.standard_normal(10_000).astype(np.float32) * (1 + i / 10))
        widths.add(obs.bin_width)
        assert obs.counts.shape == (2048,)
    assert len(widths) > 3  # it did re-bin
    assert obs.counts.sum() == 2_000_000 and obs.counts.nbytes == 2048 * 8


# -- merge ---------------------------------------------------------------------------------------


def test_merge_equals_one_observer_fed_both() -> None:
    rng = np.random.default_rng(2)
    xa = [rng.standard_normal(30_000).astype(np.float32) for _ in range(3)]
    xb = [(rng.laplace(size=30_000) * 3 + 4).astype(np.float32) for _ in range(3)]
    a, b, both = streamed(xa), streamed(xb), streamed(xa + xb)
    a.nonfinite, b.nonfinite = 2, 3
    finer = min(a.bin_width, b.bin_width)
    finer_max_bin = (a if a.bin_width == finer else b).counts.max()
    a.merge(b)
    everything = np.concatenate(xa + xb)
    assert a.range() == both.range() == (everything.min(), everything.max())  # exact
    assert a.counts.sum() == pytest.approx(everything.size, rel=1e-12)
    assert (a.batches, a.nonfinite, a.zeros) == (6, 5, both.zeros)
    assert a.counts.shape == (a.bins,)
    # NOTE: the coarser grid stays exact; the finer one's counts are spread by overlap, which
    # moves mass by less than one of its bins: the cumulative count at each merged edge is off
    # by at most one of its bins' count.
    cum_exact = np.cumsum(exact_counts(a, everything))
    assert np.max(np.abs(np.cumsum(a.counts) - cum_exact)) <= finer_max_bin
    for method in ("minmax", "percentile"):  # continuous in the histogram: within a bin or two
        for got, want in zip(a.range_for(method), both.range_for(method), strict=True):
            assert abs(got - want) <= 2 * max(a.bin_width, both.bin_width), method
    # NOTE: mse and entropy are argmins of objectives that are flat near their minimum, so the
    # range may move further; what must agree is the quantization error it gives.
    x = everything.astype(np.float32)

    def real_mse(lo: float, hi: float) -> float:
        return float(np.mean((fake_quantize(x, choose_qparams(lo, hi, "int8")) - x) ** 2))

    assert real_mse(*a.range_for("mse")) == pytest.approx(
        real_mse(*both.range_for("mse")), rel=0.05
    )


def test_merge_edge_cases() -> None:
    empty, full = HistogramObserver(), streamed([np.array([1.0, 2.0, 5.0])])
    empty.merge(full)  # into an empty one: a copy
    assert empty.range() == (1.0, 5.0) and empty.counts.sum() == 3
    empty.counts[0] += 1  # ... not a view
    assert full.counts.sum() == 3
    full.merge(HistogramObserver())  # an empty one adds nothing
    assert full.counts.sum() == 3
    p, q = streamed([np.full(4, 2.0)]), streamed([np.full(3, 2.0)])
    p.merge(q)  # two equal point masses
    assert p.range() == (2.0, 2.0) and p.counts.sum() == 7
    p.merge(streamed([np.full(2, -1.0)]))  # two different points: a fresh grid over both
    assert p.range() == (-1.0, 2.0) and p.counts.sum() == 9
    assert p.counts[0] == 2 and p.counts[-1] == 7
    p.merge(p)  # itself: everything doubles
    assert p.counts.sum() == 18 and p.range() == (-1.0, 2.0)


def test_merge_refuses_other_types_and_bin_counts() -> None:
    with pytest.raises(QuantaError, match="same bins"):
        HistogramObserver(bins=64).merge(HistogramObserver(bins=128))
    with pytest.raises(QuantaError, match="another HistogramObserver"):
        HistogramObserver().merge(object())  # type: ignore[arg-type]


# -- non-finite values and degenerate inputs ----------------------------------------------------


def test_nan_and_inf_are_skipped_and_counted() -> None:
    obs = HistogramObserver()
    obs.update(np.array([1.0, np.nan, np.inf, -np.inf, -3.0, 0.0], np.float32))
    obs.update(np.full(4, np.nan, np.float32))  # nothing finite: not a batch
    obs.update(np.zeros((0, 3), np.float32))  # empty: nothing
    assert obs.range() == (-3.0, 1.0)
    assert (obs.nonfinite, obs.batches, obs.zeros) == (7, 1, 1)
    assert obs.counts.sum() == 3


@pytest.mark.parametrize("method", METHODS)
def test_observer_that_saw_nothing_raises(method: str) -> None:
    obs = HistogramObserver()
    obs.update(np.array([np.nan]))
    with pytest.raises(QuantaError, match="saw no finite values"):
        obs.range_for(method)
    with pytest.raises(QuantaError, match="saw no finite values"):
        obs.qparams("int8", method=method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4", "int16"])
@pytest.mark.parametrize(
    "batches",
    [
        [np.zeros(100)],  # all zeros
        [np.full(50, 0.7)],  # a constant
        [np.full(50, -2.5)],  # a negative constant
        [np.array([3.0])],  # a single value
        [np.array([3.0]), np.array([3.0, 3.0])],  # a constant over batches
        [np.array([3.0]), np.array([-1.0])],  # a point, then a second one
    ],
)
def test_degenerate_inputs_give_finite_positive_scales(
    method: str, dtype: str, batches: list[np.ndarray]
) -> None:
    obs = streamed(batches)
    lo, hi = obs.range_for(method, dtype)
    data = np.concatenate(batches)
    assert data.min() <= lo <= hi <= data.max()
    qp = obs.qparams(dtype, method=method)
    assert np.isfinite(qp.scale) and float(qp.scale) > 0


def test_huge_range_after_a_tiny_one_stays_finite() -> None:
    obs = HistogramObserver(bins=16)
    obs.update(np.array([1.0, 1.0 + 1e-12]))
    obs.update(np.array([-1e30, 1e30]))  # a ratio beyond integer lattice arithmetic
    assert obs.counts.sum() == 4 and obs.range() == (-1e30, 1e30)
    for method in METHODS:
        lo, hi = obs.range_for(method)
        assert np.isfinite([lo, hi]).all() and lo <= hi


@settings(derandomize=True, database=None, deadline=None, max_examples=25)
@given(hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(-1e6, 1e6, width=32)))
def test_every_method_gives_a_usable_range(x: np.ndarray) -> None:
    obs = streamed(np.array_split(x, 3))
    for method in METHODS:
        lo, hi = obs.range_for(method)
        assert x.min() <= lo <= hi <= x.max()
        qp = choose_qparams(lo, hi, "int8")
        assert np.isfinite(qp.scale) and float(qp.scale) > 0


# -- configuration and errors -------------------------------------------------------------------


def test_method_field_is_the_qparams_default() -> None:
    x = np.concatenate([np.linspace(-1.0, 1.0, 100_000), [1000.0]])
    obs = HistogramObserver(method="percentile", percentile=99.9)
    obs.update(x)
    assert obs.qparams("int8").scale == choose_qparams(*obs.range_for("percentile"), "int8").scale
    assert obs.range_for("percentile")[1] < 2.0  # the outlier is cut
    assert obs.range_for("percentile", percentile=100.0)[1] == 1000.0  # an option overrides
    assert obs.qparams("int8", method="minmax").scale == choose_qparams(-1.0, 1000.0).scale


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"axis": 0}, "per tensor only"),
        ({"bins": 1}, "bins must be an integer >= 2"),
        ({"bins": 2.5}, "bins must be an integer >= 2"),
        ({"method": "kl"}, "expected one of"),
        ({"percentile": 30.0}, r"percentile must be in \[50, 100\]"),
    ],
)
def test_bad_configuration_says_how_to_fix_it(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(QuantaError, match=match):
        HistogramObserver(**kwargs)  # type: ignore[arg-type]


def test_bad_method_option_or_dtype_is_named() -> None:
    obs = streamed([np.linspace(-1, 1, 100)])
    with pytest.raises(QuantaError, match="'entropie' is not known"):
        obs.range_for("entropie")
    with pytest.raises(QuantaError, match="has no option bins"):
        obs.range_for("entropy", bins=128)
    with pytest.raises(QuantaError, match="has no option zero_count"):
        obs.range_for("mse", zero_count=3)
    with pytest.raises(QuantaError, match="percentile must be in"):
        obs.range_for("percentile", percentile=101)
    with pytest.raises(QuantaError, match="'int7' is not supported"):
        obs.range_for("minmax", "int7")


# -- one pass in the tensor's dtype (calibration speed) ----------------------------------------


def test_float32_batch_gives_the_float64_state() -> None:
    # min, max and the zero count are taken on float32 values, the bins in float64: the state
    # must be the one the same values give as float64
    x = np.random.default_rng(3).standard_normal((4, 8, 9, 9)).astype(np.float32)
    x[0, 0, :2] = 0.0  # 18 exact zeros
    a, b = streamed([x, 2 * x]), streamed([x.astype(np.float64), 2 * x.astype(np.float64)])
    assert np.array_equal(a.counts, b.counts)
    assert (a.range(), a.zeros, a.hist_min, a.bin_width) == (b.range(), b.zeros, b.hist_min,
                                                             b.bin_width)  # fmt: skip
    assert a.zeros == 2 * 18


def test_large_batch_is_binned_from_its_strided_sample_with_exact_extremes() -> None:
    from quanta.quant.histogram import MAX_HISTOGRAM_VALUES

    rng = np.random.default_rng(4)
    x = rng.exponential(size=MAX_HISTOGRAM_VALUES + 5).astype(np.float32)  # step 2
    x[1] = 50.0  # odd position: outside the sample, still the maximum
    x[7] = 0.0  # odd too: counted in zeros, though not sampled
    obs = streamed([x])
    assert obs.range() == (0.0, 50.0)
    assert obs.zeros == 1
    sample = x[::2]
    expected = exact_counts(obs, sample) * (x.size / sample.size)
    assert np.array_equal(obs.counts, expected)
    assert obs.counts.sum() == pytest.approx(x.size)


def test_zeros_are_counted_only_where_the_range_holds_zero() -> None:
    obs = streamed([np.array([1.0, 2.0], np.float32), np.array([-2.0, -1.0], np.float32)])
    assert obs.zeros == 0
    obs.update(np.array([-0.0, 0.0, 3.0], np.float32))  # -0.0 is a zero too
    assert obs.zeros == 2


def test_a_batch_without_a_sample_still_reaches_minmax() -> None:
    """A batch that only widens the range (no sample: a long run samples some batches) counts
    its two extremes, so "minmax" (the outer non-empty bins) reaches them (hand oracle) and the
    other methods see two values more."""
    obs = HistogramObserver(bins=64)
    x = np.linspace(-1.0, 1.0, 101)
    obs.update_summary(-1.0, 1.0, x.size, x)
    obs.update_summary(-2.5, 4.0, 1000, None)
    assert obs.range_for("minmax") == (-2.5, 4.0)
    assert obs.counts.sum() == pytest.approx(x.size + 2)


def test_a_sample_binned_in_chunks_gets_the_one_shot_counts() -> None:
    from quanta.quant.histogram import _CHUNK

    # 2.5 chunks; the top value (past the last edge once rounded) in every chunk, and values
    # on bin edges across the chunk boundaries
    x = np.random.default_rng(5).standard_normal(5 * _CHUNK // 2).astype(np.float32)
    top = float(x.max())
    x[[0, _CHUNK - 1, _CHUNK, 2 * _CHUNK + 3]] = top
    obs = HistogramObserver(bins=64)
    obs.update_summary(float(x.min()), top, x.size, x)
    edges = (obs.hist_min + obs.bin_width * np.arange(1, 64)).astype(np.float32)
    x[_CHUNK - 40 : _CHUNK + 23] = edges[:63]
    counts = obs._sample_counts(x)
    assert np.array_equal(counts, exact_counts(obs, x))
    assert counts.sum() == x.size and counts[-1] >= 4
