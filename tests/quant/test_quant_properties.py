"""Properties of quantize/dequantize over generated qparams and data (hypothesis, derandomized)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quanta.quant import QParams, choose_qparams, dequantize, fake_quantize, qrange, quantize

# derandomize: the same examples on every run and machine; no database written into the repo
FAST = settings(derandomize=True, database=None, deadline=None, max_examples=150)

DTYPES = ["int8", "uint8", "int4", "uint4", "int16"]
# NOTE: float32 carries 24 bits: x / S and S * (q - Z) are each off by at most 2^-24 relative
ULP = 2.0**-22


@st.composite
def per_tensor_qparams(draw: st.DrawFn) -> QParams:
    dtype = draw(st.sampled_from(DTYPES))
    narrow = draw(st.booleans())
    qmin, qmax = qrange(dtype, narrow=narrow)
    scale = draw(st.floats(2.0**-20, 2.0**20, width=32))
    return QParams(scale, draw(st.integers(qmin, qmax)), dtype, narrow=narrow)


@st.composite
def per_axis_case(draw: st.DrawFn) -> tuple[np.ndarray, QParams]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    dtype = draw(st.sampled_from(DTYPES))
    qmin, qmax = qrange(dtype)
    channels = shape[axis]
    scale = draw(hnp.arrays(np.float32, channels, elements=st.floats(2.0**-13, 2.0**7, width=32)))
    zero_point = draw(hnp.arrays(np.int64, channels, elements=st.integers(qmin, qmax)))
    values = st.floats(-(2.0**13), 2.0**13, width=32) | st.just(np.nan)
    x = draw(hnp.arrays(np.float32, shape, elements=values))
    return x, QParams(scale, zero_point, dtype, axis=axis)


UNIT = hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(0.0, 1.0))


@FAST
@given(qp=per_tensor_qparams(), u=UNIT)
def test_roundtrip_error_is_at_most_half_a_step(qp: QParams, u: np.ndarray) -> None:
    scale = float(qp.scale)
    zero_point = int(qp.zero_point)
    lo, hi = scale * (qp.qmin - zero_point), scale * (qp.qmax - zero_point)
    x = (lo + u * (hi - lo)).astype(np.float32)  # inside the representable range
    err = np.abs(fake_quantize(x, qp).astype(np.float64) - x)
    assert np.all(err <= scale / 2 + ULP * (np.abs(x) + scale))


@FAST
@given(
    rmin=st.floats(-(2.0**20), 2.0**20, width=32),
    rmax=st.floats(-(2.0**20), 2.0**20, width=32),
    dtype=st.sampled_from(DTYPES),
    symmetric=st.booleans(),
    u=UNIT,
)
def test_roundtrip_error_over_the_observed_range(
    rmin: float, rmax: float, dtype: str, symmetric: bool, u: np.ndarray
) -> None:
    rmin, rmax = min(rmin, rmax), max(rmin, rmax)
    qp = choose_qparams(rmin, rmax, dtype, symmetric=symmetric)
    scale = float(qp.scale)
    x = (rmin + u * (rmax - rmin)).astype(np.float32)  # what calibration saw
    err = np.abs(fake_quantize(x, qp).astype(np.float64) - x)
    # + the float32 rounding of S itself, spread over the whole grid
    tol = scale / 2 + ULP * (np.abs(x) + scale + abs(rmin) + abs(rmax))
    assert np.all(err <= tol)


@FAST
@given(qp=per_tensor_qparams())
def test_zero_maps_exactly_to_the_zero_point(qp: QParams) -> None:
    q = quantize(np.array([0.0, -0.0], np.float32), qp)
    assert q.tolist() == [int(qp.zero_point)] * 2
    assert dequantize(q, qp).tolist() == [0.0, 0.0]


@FAST
@given(
    rmin=st.floats(-(2.0**100), 2.0**100, width=32),
    width=st.floats(0.0, 2.0**100, width=32),
    dtype=st.sampled_from(DTYPES),
    symmetric=st.booleans(),
)
def test_chosen_qparams_represent_zero_exactly(
    rmin: float, width: float, dtype: str, symmetric: bool
) -> None:
    # zero-width ranges (width = 0, all zeros, constants) included
    qp = choose_qparams(rmin, rmin + width, dtype, symmetric=symmetric)
    assert np.isfinite(qp.scale) and float(qp.scale) > 0
    assert quantize(np.float32(0.0), qp) == qp.zero_point
    assert dequantize(qp.zero_point, qp) == 0.0


@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")
@FAST
@given(
    qp=per_tensor_qparams(),
    x=hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(allow_nan=False, width=32)),
)
def test_quantize_is_monotonic(qp: QParams, x: np.ndarray) -> None:
    x = np.sort(x)  # every finite float32 and +-inf, most of them far out of range
    q = quantize(x, qp).astype(np.int64)
    assert np.all(np.diff(q) >= 0)


@FAST
@given(case=per_axis_case())
def test_per_axis_is_per_tensor_on_each_slice(case: tuple[np.ndarray, QParams]) -> None:
    x, qp = case
    assert qp.axis is not None
    q = quantize(x, qp)
    r = dequantize(q, qp)
    for c in range(qp.scale.shape[0]):
        slice_qp = QParams(qp.scale[c], qp.zero_point[c], qp.dtype)
        q_c = quantize(np.take(x, c, axis=qp.axis), slice_qp)
        np.testing.assert_array_equal(np.take(q, c, axis=qp.axis), q_c)
        np.testing.assert_array_equal(np.take(r, c, axis=qp.axis), dequantize(q_c, slice_qp))
