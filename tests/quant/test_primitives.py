"""quantize, dequantize and quantize_multiplier on hand-computed arrays (ONNX reference style)."""

from __future__ import annotations

import numpy as np
import pytest

from quanta.errors import QuantaError
from quanta.quant import (
    QParams,
    dequantize,
    fake_quantize,
    quantize,
    quantize_multiplier,
    round_half_to_even,
)

TIES = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]


def test_round_half_to_even() -> None:
    x = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, 0.50000006], np.float32)
    r = round_half_to_even(x)
    # ties go to the even neighbour, never away from zero (2.5 -> 2, not 3); off-ties round normally
    np.testing.assert_array_equal(r, [-4, -2, -2, -0.0, 0, 2, 2, 4, 0, 1])
    assert np.signbit(r[3])  # -0.5 -> -0.0


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0**-7])  # powers of two: x / S is an exact tie
@pytest.mark.parametrize(
    ("dtype", "zero_point", "expected"),
    [
        # rounding half to even: -2.5 -2.5 -0.5 0.5 1.5 2.5 -> -2 -2 -0 0 2 2
        ("int8", 0, [-2, -2, 0, 0, 2, 2]),
        # the zero point is added after rounding, so ties still go to even x / S
        ("int8", 3, [1, 1, 3, 3, 5, 5]),
        # Z = qmin: the negative ties saturate at -128
        ("int8", -128, [-128, -128, -128, -128, -126, -126]),
        # uint8 midpoint
        ("uint8", 128, [126, 126, 128, 128, 130, 130]),
        # uint8 Z = 0: every negative value saturates at 0
        ("uint8", 0, [0, 0, 0, 0, 2, 2]),
    ],
)
def test_quantize_ties_half_to_even(
    scale: float, dtype: str, zero_point: int, expected: list[int]
) -> None:
    qp = QParams(scale, zero_point, dtype)
    x = np.array(TIES, np.float32) * np.float32(scale)
    q = quantize(x, qp)
    assert q.dtype == qp.storage_type
    assert q.tolist() == expected


@pytest.mark.parametrize(
    ("dtype", "narrow", "x", "expected", "storage"),
    [
        # saturate case, int8: below -128 and above 127; 127.5 rounds to 128 then saturates
        ("int8", False, [-1e4, -128.6, -128.5, -128, 127, 127.4, 127.5, 1e4],
         [-128, -128, -128, -128, 127, 127, 127, 127], np.int8),
        # saturate case, uint8: negatives go to 0, 255.5 rounds to 256 then saturates
        ("uint8", False, [-1e4, -1, -0.5, 0, 255, 255.5, 256, 1e4],
         [0, 0, 0, 0, 255, 255, 255, 255], np.uint8),
        # saturate case, int4 [-8, 7], stored in int8
        ("int4", False, [-100, -9, -8.5, -8, 7, 7.5, 8, 100],
         [-8, -8, -8, -8, 7, 7, 7, 7], np.int8),
        # saturate case, uint4 [0, 15], stored in uint8
        ("uint4", False, [-100, -1, 0, 15, 15.5, 16, 100],
         [0, 0, 0, 15, 15, 15, 15], np.uint8),
        # narrow int8 [-127, 127]: -128 is never produced
        ("int8", True, [-1e4, -128, -127.5, -127, 127, 127.5, 1e4],
         [-127, -127, -127, -127, 127, 127, 127], np.int8),
        # narrow int4 [-7, 7]
        ("int4", True, [-100, -8, -7, 7, 8], [-7, -7, -7, 7, 7], np.int8),
    ],
)  # fmt: skip
def test_quantize_saturates(
    dtype: str, narrow: bool, x: list[float], expected: list[int], storage: type
) -> None:
    qp = QParams(1.0, 0, dtype, narrow=narrow)
    q = quantize(np.array(x, np.float32), qp)
    assert q.dtype == storage
    assert q.tolist() == expected


def test_quantize_saturates_with_zero_point() -> None:
    # Z = 100: x / S + Z leaves [-128, 127] as soon as x / S > 27
    qp = QParams(0.5, 100, "int8")
    q = quantize(np.array([13.5, 14.0, 14.5, -114.0, -114.5, -200.0], np.float32), qp)
    assert q.tolist() == [127, 127, 127, -128, -128, -128]


# NOTE: 3e38 / 0.1 overflows float32 to inf before saturating; quantize lets NumPy warn about it
@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")
def test_quantize_infinities_saturate() -> None:
    qp = QParams(0.1, 3, "int8")
    q = quantize(np.array([np.inf, -np.inf, 3e38, -3e38], np.float32), qp)
    assert q.tolist() == [127, -128, 127, -128]


def test_quantize_nan_maps_to_zero_point() -> None:
    # quanta's convention (docstring): NaN -> Z, so it dequantizes to 0.0. ONNX leaves integer NaN
    # handling undefined; ORT's CPU kernel gives qmin instead (see test_quant_onnx_parity.py).
    for dtype, zero_point in [("int8", 3), ("int8", -128), ("uint8", 128), ("int4", -2)]:
        qp = QParams(0.25, zero_point, dtype)
        q = quantize(np.array([np.nan, 1.0, -np.nan], np.float32), qp)
        assert q.tolist() == [zero_point, zero_point + 4, zero_point]
        assert dequantize(q, qp)[0] == 0.0


def test_quantize_scalar_and_list_inputs() -> None:
    qp = QParams(1.0, 0, "int8")
    assert quantize(2.5, qp).shape == ()
    assert int(quantize(2.5, qp)) == 2
    # the docstring example
    assert quantize([0.0, 0.5, 1.5, 2.5, 1000.0], qp).tolist() == [0, 0, 2, 2, 127]


def test_quantize_divides_in_float32() -> None:
    # ONNX computes x / S in float32, then rounds. 4.23 / 0.94 is 4.5000000317 in float64 but an
    # exact tie 4.5 in float32 -> 4 (float64 would give 5)
    assert quantize(4.23, QParams(0.94, 0)).tolist() == 4
    # dividing is not multiplying by 1 / S: 0.18 * (1 / 0.04) is a tie 4.5 -> 4 and
    # 3.3 * (1 / 0.6) a tie 5.5 -> 6, but the quotients are 4.5000005 -> 5 and 5.4999995 -> 5
    assert quantize(0.18, QParams(0.04, 0)).tolist() == 5
    assert quantize(3.3, QParams(0.6, 0)).tolist() == 5


# -- per-axis ----------------------------------------------------------------------------------

SCALES = np.array([1.0, 0.5, 0.25], np.float32)
ZERO_POINTS = np.array([0, 3, -2], np.int8)


def test_quantize_per_axis_0() -> None:
    qp = QParams(SCALES, ZERO_POINTS, "int8", axis=0)
    x = np.array([[-1.5, 0.5, 2.5, 200.0]] * 3, np.float32)  # (C=3, 4)
    q = quantize(x, qp)
    expected = [
        [-2, 0, 2, 127],  # S = 1, Z = 0: ties to even, 200 saturates
        [0, 4, 8, 127],  # S = 0.5, Z = 3: x / S = -3, 1, 5, 400
        [-8, 0, 8, 127],  # S = 0.25, Z = -2: x / S = -6, 2, 10, 800
    ]
    assert q.tolist() == expected
    expected_r = [[-2.0, 0.0, 2.0, 127.0], [-1.5, 0.5, 2.5, 62.0], [-1.5, 0.5, 2.5, 32.25]]
    np.testing.assert_array_equal(dequantize(q, qp), expected_r)


@pytest.mark.parametrize("axis", [1, -1])
def test_quantize_per_axis_1(axis: int) -> None:
    qp = QParams(SCALES, ZERO_POINTS, "int8", axis=axis)
    x = np.array([[1.25] * 3, [-40.0] * 3], np.float32)  # (2, C=3)
    q = quantize(x, qp)
    # column 0: 1.25 -> 1; column 1: 2.5 -> 2 (tie) + 3; column 2: 5 - 2
    # row 1: -40, -80 + 3, -160 - 2 saturates
    assert q.tolist() == [[1, 5, 3], [-40, -77, -128]]
    np.testing.assert_array_equal(dequantize(q, qp), [[1.0, 1.0, 1.25], [-40.0, -40.0, -31.5]])


def test_quantize_per_axis_4d() -> None:
    # a Conv weight (O=3, I=2, kH=1, kW=2), per output channel
    qp = QParams(SCALES, np.zeros(3, np.int8), "int8", axis=0, narrow=True)
    w = np.ones((3, 2, 1, 2), np.float32)
    q = quantize(w, qp)  # 1 / S = 1, 2, 4 per output channel
    assert q.shape == w.shape
    assert (q[0] == 1).all() and (q[1] == 2).all() and (q[2] == 4).all()


@pytest.mark.parametrize(("shape", "axis"), [((2, 4), 0), ((3, 2), 1), ((3, 2), -1), ((), 0)])
def test_per_axis_shape_mismatch_raises(shape: tuple[int, ...], axis: int) -> None:
    qp = QParams(SCALES, ZERO_POINTS, "int8", axis=axis)
    with pytest.raises(QuantaError, match="per-channel scales|out of range"):
        quantize(np.zeros(shape, np.float32), qp)
    with pytest.raises(QuantaError, match="per-channel scales|out of range"):
        dequantize(np.zeros(shape, np.int8), qp)


@pytest.mark.parametrize(("shape", "axis"), [((3,), 1), ((3, 3), 2), ((3, 3), -3)])
def test_per_axis_axis_out_of_range_raises(shape: tuple[int, ...], axis: int) -> None:
    qp = QParams(SCALES, ZERO_POINTS, "int8", axis=axis)
    with pytest.raises(QuantaError):
        quantize(np.zeros(shape, np.float32), qp)


# -- dequantize / fake_quantize ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "zero_point", "q", "expected"),
    [
        ("int8", 3, [-128, -1, 0, 3, 127], [-32.75, -1.0, -0.75, 0.0, 31.0]),
        ("uint8", 128, [0, 127, 128, 129, 255], [-32.0, -0.25, 0.0, 0.25, 31.75]),
        ("int4", -2, [-8, -2, 7], [-1.5, 0.0, 2.25]),
    ],
)
def test_dequantize(dtype: str, zero_point: int, q: list[int], expected: list[float]) -> None:
    qp = QParams(0.25, zero_point, dtype)
    r = dequantize(np.array(q, qp.storage_type), qp)
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r, expected)  # r = S * (q - Z), exact for S = 2^-2


def test_fake_quantize_rounds_to_the_grid() -> None:
    qp = QParams(0.5, 1, "int8")
    x = np.array([0.0, 0.2, 0.25, 0.75, 1000.0, -1000.0], np.float32)
    # 0.25 / 0.5 = 0.5 -> 0 (tie), 0.75 / 0.5 = 1.5 -> 2, saturation at (127 - 1) * 0.5
    np.testing.assert_array_equal(fake_quantize(x, qp), [0.0, 0.0, 0.0, 1.0, 63.0, -64.5])


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_int32_saturates_at_both_ends() -> None:
    qp = QParams(1.0, 0, "int32")
    q = quantize(np.array([3e9, -3e9], np.float32), qp)
    assert q.tolist() == [2**31 - 1, -(2**31)]


# -- quantize_multiplier: M = M0 * 2^-(31 + shift), M0 in [2^30, 2^31) ----------------------------


@pytest.mark.parametrize("m", [0.3, 0.5, 1.5, 1e-5, 0.999999, 1.0, 2.0**-20, 123.456])
def test_quantize_multiplier_accuracy(m: float) -> None:
    m0, shift = quantize_multiplier(m)
    assert isinstance(m0, int) and isinstance(shift, int)
    assert 2**30 <= m0 < 2**31
    approx = m0 * 2.0 ** -(31 + shift)
    assert abs(approx - m) <= 2.0**-31 * m


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (0.0, (0, 0)),  # zero has no normalised mantissa
        (0.5, (2**30, 0)),  # 0.5 = 2^30 * 2^-31
        (0.3, (1288490189, 1)),  # 0.6 * 2^31 = 1288490188.8 rounds up; 0.3 = 0.6 * 2^-1
        (1.5, (1610612736, -1)),  # M >= 1: negative shift
        (1.0 - 2.0**-40, (2**30, -1)),  # the mantissa rounds up to 2^31: carried into the exponent
    ],
)
def test_quantize_multiplier_golden(m: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(m) == expected


@pytest.mark.parametrize("m", [-0.5, float("nan"), float("inf")])
def test_quantize_multiplier_rejects(m: float) -> None:
    with pytest.raises(QuantaError, match="finite and >= 0"):
        quantize_multiplier(m)
