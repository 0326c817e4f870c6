"""Integer requantization, the gemmlowp / TFLite way: no float at run time.

A real multiplier ``M = s_in * s_w / s_out`` is stored as a 32-bit integer ``M0`` in
``[2**30, 2**31)`` and a shift ``n`` with ``M = M0 * 2**-(31 + n)``
(``quanta.quant.quantize_multiplier``). Applying it to an int32 accumulator ``acc`` is

1. ``acc << max(-n, 0)`` (only when ``M >= 1``),
2. ``SaturatingRoundingDoublingHighMul(acc, M0)``: the high 32 bits of ``2 * acc * M0``, rounded
   to nearest (ties upward, by gemmlowp's nudge),
3. ``RoundingDivideByPOT(x, max(n, 0))``: an arithmetic right shift rounded to nearest, ties away
   from zero.

That is gemmlowp's and TFLite's reference arithmetic ("double rounding"): step 2 rounds to an
integer before step 3 rounds again, so a value a hair below ``k + 0.5`` can become exactly
``k + 0.5`` after step 2 and round up. ``rounding="single"`` (TFLite's
``TFLITE_SINGLE_ROUNDING``) instead computes ``(acc * M0) >> (31 + n)`` in 64 bits with one
rounding, ties away from zero: the correctly rounded result whenever ``M0`` represents ``M``.

ONNX Runtime's kernels multiply the accumulator by a float32 ``M`` and round half to even:
they agree with single rounding except within float32 error of a tie, and with double
rounding except also on those double-rounding cases. Both are one quantization step.
All arithmetic below is on int64 arrays holding int32 values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from quanta.quant import quantize_multiplier

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "ROUNDINGS",
    "multiply_by_quantized_multiplier",
    "quantize_multipliers",
    "requantize",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

IntArray = npt.NDArray[np.int64]


def saturating_rounding_doubling_high_mul(a: npt.ArrayLike, b: npt.ArrayLike) -> IntArray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul`` on int32 values (held in int64).

    ``round(a * b / 2**31)``, ties upward (+0.5 -> 1, -0.5 -> 0); the one overflowing case
    ``a == b == INT32_MIN`` saturates to ``INT32_MAX``.
    """
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b  # |a*b| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    total = ab + nudge
    # C's division truncates toward zero; numpy's // floors, so divide the magnitude.
    high = np.sign(total) * (np.abs(total) >> 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x: npt.ArrayLike, exponent: npt.ArrayLike) -> IntArray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded, ties away from zero."""
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


ROUNDINGS = ("double", "single")


def multiply_by_quantized_multiplier(
    acc: npt.ArrayLike, m0: npt.ArrayLike, shift: npt.ArrayLike, rounding: str = "double"
) -> IntArray:
    """``acc * M`` rounded, for ``M = m0 * 2**-(31 + shift)`` (TFLite's
    ``MultiplyByQuantizedMultiplier``); ``m0`` and ``shift`` broadcast against ``acc``.

    ``rounding``: "double" (gemmlowp, TFLite's default) or "single" (one rounding of the
    64-bit product, ties away from zero).
    """
    acc, shift = np.asarray(acc, np.int64), np.asarray(shift, np.int64)
    left = np.maximum(-shift, 0)
    shifted = np.clip(acc << left, INT32_MIN, INT32_MAX)
    if rounding == "single":
        total = np.minimum(np.maximum(shift, 0) + 31, 62)
        product = shifted * np.asarray(m0, np.int64)  # |.| < 2**62
        half = np.int64(1) << (total - 1)
        magnitude = (np.abs(product) + half) >> total
        return np.sign(product) * magnitude
    if rounding != "double":
        raise ValueError(f"rounding {rounding!r}; expected one of {ROUNDINGS}")
    right = np.minimum(np.maximum(shift, 0), 62)  # beyond 62 every int32 rounds to 0 anyway
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, m0), right)


def quantize_multipliers(multipliers: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """``quantize_multiplier`` over an array: ``(M0, shift)`` arrays of the same shape."""
    flat = np.asarray(multipliers, np.float64).ravel()
    pairs = [quantize_multiplier(float(m)) for m in flat]
    shape = np.shape(multipliers)
    m0 = np.array([p[0] for p in pairs], np.int64).reshape(shape)
    shift = np.array([p[1] for p in pairs], np.int64).reshape(shape)
    return m0, shift


def requantize(
    acc: npt.ArrayLike,
    multiplier: npt.ArrayLike,
    zero_point: int,
    qmin: int,
    qmax: int,
    rounding: str = "double",
) -> IntArray:
    """An int32 accumulator to the output grid: ``clamp(Z + acc * M, qmin, qmax)``, integers only.

    ``multiplier`` is the real ``M`` (scalar, or one per channel broadcasting against ``acc``);
    it is turned into ``(M0, shift)`` once, as a converter would at build time. The clamp is also
    where a fused ReLU / ReLU6 happens: their bounds are the ends of the output range.
    """
    m0, shift = quantize_multipliers(multiplier)
    scaled = multiply_by_quantized_multiplier(
        np.clip(acc, INT32_MIN, INT32_MAX), m0, shift, rounding
    )
    return np.clip(scaled + zero_point, qmin, qmax)
