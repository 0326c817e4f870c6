"""QParams and choose_qparams: hand-computed seeds, symmetric, per-axis, zero range, errors."""

from __future__ import annotations

import numpy as np
import pytest

from quanta.errors import QuantaError
from quanta.quant import MIN_SCALE, QParams, choose_qparams, dequantize, qrange, quantize


def f32(x: float) -> float:
    """The float32 value quanta stores for a scale computed in float64."""
    return float(np.float32(x))


# -- qrange -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "narrow", "expected"),
    [
        ("int8", False, (-128, 127)),
        ("int8", True, (-127, 127)),  # narrow: the most negative value is dropped
        ("uint8", False, (0, 255)),
        ("uint8", True, (0, 255)),  # narrow never changes an unsigned range
        ("int4", False, (-8, 7)),
        ("int4", True, (-7, 7)),
        ("uint4", False, (0, 15)),
        ("int32", False, (-(2**31), 2**31 - 1)),
    ],
)
def test_qrange(dtype: str, narrow: bool, expected: tuple[int, int]) -> None:
    assert qrange(dtype, narrow=narrow) == expected


def test_qrange_unknown_dtype_names_the_choices() -> None:
    with pytest.raises(QuantaError, match="'int3'.*int8"):
        qrange("int3")


# -- asymmetric seeds: S = (rmax - rmin) / (qmax - qmin), Z = qmin - round(rmin / S) -------------


@pytest.mark.parametrize(
    ("rmin", "rmax", "dtype", "scale", "zero_point"),
    [
        # [-1, 3] uint8: S = 4/255, rmin/S = -63.75 -> -64, Z = 0 + 64
        (-1.0, 3.0, "uint8", 4 / 255, 64),
        # same range in int8: Z = -128 + 64
        (-1.0, 3.0, "int8", 4 / 255, -64),
        # [0, 6] int8: rmin = 0 so Z = qmin
        (0.0, 6.0, "int8", 6 / 255, -128),
        # [2, 5] does not contain 0: widened to [0, 5]
        (2.0, 5.0, "int8", 5 / 255, -128),
        (2.0, 5.0, "uint8", 5 / 255, 0),
        # [-5, -2] widened to [-5, 0]: 0.0 is the top of the grid
        (-5.0, -2.0, "uint8", 5 / 255, 255),
        (-5.0, -2.0, "int8", 5 / 255, 127),
        # Z tie, half to even: S = 255/255 = 1, rmin/S = -2.5 -> -2, Z = 2 (not 3)
        (-2.5, 252.5, "uint8", 1.0, 2),
        # Z tie, half to even: rmin/S = -3.5 -> -4, Z = 4
        (-3.5, 251.5, "uint8", 1.0, 4),
        # int4: [-1, 2] -> S = 3/15 = 0.2, rmin/S = -5, Z = -8 + 5
        (-1.0, 2.0, "int4", 0.2, -3),
        # uint4: [-1, 2] -> Z = 0 + 5
        (-1.0, 2.0, "uint4", 0.2, 5),
    ],
)
def test_asymmetric_seed(
    rmin: float, rmax: float, dtype: str, scale: float, zero_point: int
) -> None:
    qp = choose_qparams(rmin, rmax, dtype)
    assert qp.scale.dtype == np.float32
    assert float(qp.scale) == f32(scale)
    assert int(qp.zero_point) == zero_point
    assert qp.zero_point.dtype == qp.storage_type
    assert qp.axis is None and not qp.narrow


def test_asymmetric_zero_is_exact_and_range_ends_within_half_step() -> None:
    qp = choose_qparams(-1.0, 3.0, "uint8")
    q = quantize(np.array([-1.0, 0.0, 3.0], np.float32), qp)
    assert q.tolist() == [0, 64, 255]
    r = dequantize(q, qp)
    assert r[1] == 0.0  # zero padding stays exactly zero
    np.testing.assert_allclose(r[[0, 2]], [-1.0, 3.0], atol=float(qp.scale) / 2)


# -- symmetric weights: Z = 0, S = max|r| / 127, narrow [-127, 127] -------------------------------


def test_symmetric_int8_weights() -> None:
    qp = choose_qparams(-0.5, 1.27, "int8", symmetric=True)
    assert float(qp.scale) == f32(1.27 / 127)
    assert int(qp.zero_point) == 0
    assert qp.narrow and (qp.qmin, qp.qmax) == (-127, 127)
    # -max and +max map to -127 and 127; -1.3 saturates at -127, never -128
    q = quantize(np.array([-1.27, -1.3, 0.0, 1.27], np.float32), qp)
    assert q.tolist() == [-127, -127, 0, 127]


def test_symmetric_uses_the_larger_magnitude() -> None:
    qp = choose_qparams(-2.54, 1.0, "int8", symmetric=True)
    assert float(qp.scale) == f32(2.54 / 127)
    assert int(qp.zero_point) == 0


def test_symmetric_int4_is_narrow() -> None:
    qp = choose_qparams(-1.0, 3.5, "int4", symmetric=True)
    assert (qp.qmin, qp.qmax) == (-7, 7)
    assert float(qp.scale) == 0.5  # 3.5 / 7
    assert int(qp.zero_point) == 0


def test_symmetric_not_narrow_when_asked() -> None:
    # full [-128, 127]: S = max|r| / 127.5, as PyTorch's symmetric observers
    qp = choose_qparams(-1.0, 2.55, "int8", symmetric=True, narrow=False)
    assert (qp.qmin, qp.qmax) == (-128, 127)
    assert float(qp.scale) == f32(2.55 / 127.5)
    assert int(qp.zero_point) == 0


def test_symmetric_uint8_centres_on_128() -> None:
    qp = choose_qparams(-1.0, 2.55, "uint8", symmetric=True)
    assert int(qp.zero_point) == 128
    assert float(qp.scale) == f32(2.55 / 127.5)
    assert not qp.narrow


# -- per-axis ----------------------------------------------------------------------------------


def test_per_axis_asymmetric() -> None:
    qp = choose_qparams([-1.0, 0.0, -0.5], [3.0, 6.0, -0.25], "uint8", axis=0)
    assert qp.axis == 0
    assert qp.scale.shape == qp.zero_point.shape == (3,)
    # channel 0 as [-1, 3]; channel 1 starts at 0; channel 2 widened to [-0.5, 0]
    np.testing.assert_array_equal(qp.scale, np.float32([4 / 255, 6 / 255, 0.5 / 255]))
    assert qp.zero_point.tolist() == [64, 0, 255]


def test_per_axis_symmetric_weights() -> None:
    qp = choose_qparams([-2.54, -0.1, 0.0], [1.0, 0.127, 0.0], "int8", symmetric=True, axis=0)
    # channel 2 is all zero: the smallest scale, never 0
    np.testing.assert_array_equal(qp.scale, np.float32([2.54 / 127, 0.127 / 127, MIN_SCALE]))
    assert qp.zero_point.tolist() == [0, 0, 0]
    assert qp.narrow


def test_per_axis_broadcast_shape() -> None:
    qp = QParams(np.ones(3, np.float32), np.zeros(3, np.int8), axis=1)
    assert qp.broadcast_shape(4) == (1, -1, 1, 1)
    assert QParams(np.ones(3, np.float32), np.zeros(3, np.int8), axis=-1).broadcast_shape(2) == (
        1,
        -1,
    )
    assert QParams(1.0, 0).broadcast_shape(3) == ()


# -- zero range --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "symmetric", "zero_point"),
    [
        ("int8", False, -128),  # widened to [0, 0]: Z = qmin - round(0 / S)
        ("uint8", False, 0),
        ("int8", True, 0),
        ("int4", False, -8),
    ],
)
def test_all_zero_range_gives_a_usable_scale(dtype: str, symmetric: bool, zero_point: int) -> None:
    qp = choose_qparams(0.0, 0.0, dtype, symmetric=symmetric)
    assert np.isfinite(qp.scale) and float(qp.scale) > 0
    assert float(qp.scale) == MIN_SCALE
    assert int(qp.zero_point) == zero_point
    zeros = np.zeros(5, np.float32)
    q = quantize(zeros, qp)
    assert q.tolist() == [zero_point] * 5
    np.testing.assert_array_equal(dequantize(q, qp), zeros)  # exactly 0.0, no NaN


@pytest.mark.parametrize("c", [0.7, -0.7, 1e-9, -3e-12, 1e4])
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4"])
def test_constant_tensor(c: float, dtype: str) -> None:
    qp = choose_qparams(c, c, dtype)
    scale = float(qp.scale)
    assert np.isfinite(scale) and scale > 0
    assert quantize(np.float32(0.0), qp) == qp.zero_point
    assert dequantize(qp.zero_point, qp) == 0.0
    r = dequantize(quantize(np.full(4, c, np.float32), qp), qp)
    # within half a step, plus float32 rounding of c itself
    np.testing.assert_allclose(r, c, rtol=1e-6, atol=scale / 2)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0.0, "zero_point": 0}, "scale must be finite and > 0"),
        ({"scale": -0.1, "zero_point": 0}, "scale must be finite and > 0"),
        ({"scale": float("nan"), "zero_point": 0}, "scale must be finite and > 0"),
        ({"scale": float("inf"), "zero_point": 0}, "scale must be finite and > 0"),
        # a float64 scale that underflows to 0 in float32
        ({"scale": 1e-50, "zero_point": 0}, "scale must be finite and > 0"),
        ({"scale": [1.0, 0.0], "zero_point": [0, 0], "axis": 0}, "scale must be finite"),
        ({"scale": 1.0, "zero_point": 128}, r"outside the int8 range \[-128, 127\]"),
        ({"scale": 1.0, "zero_point": -129}, "outside the int8 range"),
        ({"scale": 1.0, "zero_point": -1, "dtype": "uint8"}, r"uint8 range \[0, 255\]"),
        ({"scale": 1.0, "zero_point": 256, "dtype": "uint8"}, "uint8 range"),
        ({"scale": 1.0, "zero_point": 8, "dtype": "int4"}, r"int4 range \[-8, 7\]"),
        ({"scale": 1.0, "zero_point": 16, "dtype": "uint4"}, r"uint4 range \[0, 15\]"),
        ({"scale": 1.0, "zero_point": -128, "narrow": True}, r"int8 range \[-127, 127\]"),
        ({"scale": [1.0, 1.0], "zero_point": [0, 0, 0], "axis": 0}, r"\(2,\).*\(3,\)"),
        ({"scale": [1.0, 1.0], "zero_point": [0, 0]}, "per-tensor QParams need a scalar"),
        ({"scale": 1.0, "zero_point": 0, "axis": 0}, "per-axis QParams need a 1-D"),
        ({"scale": 1.0, "zero_point": 0, "dtype": "float8"}, "'float8' is not supported"),
    ],
)
def test_qparams_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(QuantaError, match=message):
        QParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("zero_point", [3.7, float("nan")])
def test_qparams_rejects_non_integer_zero_point(zero_point: float) -> None:
    with pytest.raises(QuantaError):
        QParams(1.0, zero_point)  # type: ignore[arg-type]


def test_qparams_is_frozen_and_normalises_types() -> None:
    qp = QParams(0.5, 3, "uint8")
    assert qp.scale.dtype == np.float32 and qp.scale.shape == ()
    assert qp.zero_point.dtype == np.uint8
    with pytest.raises(AttributeError):
        qp.scale = np.float32(1.0)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((float("nan"), 1.0), {}, "range must be finite"),
        ((-1.0, float("inf")), {}, "range must be finite"),
        (([-1.0, 0.0], [1.0, 2.0, 3.0]), {"axis": 0}, "rmin shape"),
        (([-1.0, 0.0], [1.0, 2.0]), {}, "pass axis="),
        ((-1.0, 1.0, "int3"), {}, "'int3' is not supported"),
    ],
)
def test_choose_qparams_errors(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(QuantaError, match=message):
        choose_qparams(*args, **kwargs)  # type: ignore[arg-type]
