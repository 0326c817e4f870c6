"""quantize, dequantize, requantization multipliers: the only definitions of this math in quanta."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from quanta.errors import QuantaError
from quanta.quant.qparams import QParams

__all__ = ["dequantize", "fake_quantize", "quantize", "quantize_multiplier", "round_half_to_even"]


def round_half_to_even(x: npt.ArrayLike) -> npt.NDArray[np.floating]:
    """Round to nearest, ties to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0), as ONNX does."""
    return np.rint(x)


def _broadcast(qparams: QParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if qparams.axis is not None:
        if not -x.ndim <= qparams.axis < x.ndim:
            raise QuantaError(
                f"axis {qparams.axis} is out of range for a tensor of rank {x.ndim}; "
                f"expected -{x.ndim} <= axis < {x.ndim}"
            )
        axis = qparams.axis % x.ndim
        if x.shape[axis] != qparams.scale.shape[0]:
            raise QuantaError(
                f"tensor of shape {x.shape} has no axis {qparams.axis} of size "
                f"{qparams.scale.shape[0]} to match the per-channel scales"
            )
    shape = qparams.broadcast_shape(x.ndim)
    return qparams.scale.reshape(shape), qparams.zero_point.reshape(shape).astype(np.float32)


def quantize(x: npt.ArrayLike, qparams: QParams) -> npt.NDArray[np.integer]:
    """Quantize real values: ``q = saturate(round(x / S) + Z)``.

    Computed in float32 as ONNX QuantizeLinear: the division ``x / S`` is rounded half to even,
    then the zero point is added and the result saturated to ``[qmin, qmax]`` (``[-127, 127]`` for
    narrow int8). NaN maps to the zero point.

    Example:
        >>> from quanta.quant import choose_qparams
        >>> quantize([0.0, 0.5, 1.5, 2.5, 1000.0], QParams(1.0, 0, "int8"))
        array([  0,   0,   2,   2, 127], dtype=int8)
    """
    x = np.asarray(x, dtype=np.float32)
    scale, zero_point = _broadcast(qparams, x)
    with np.errstate(invalid="ignore", over="ignore"):
        q = round_half_to_even(x / scale) + zero_point
    q = np.where(np.isnan(q), zero_point, q)
    # NOTE: saturate in float64: in float32, int32's qmax 2**31 - 1 rounds up to 2**31 and the
    # cast would wrap to -2**31. Every float32 value is exact in float64, so int8 results are
    # unchanged.
    return np.clip(q.astype(np.float64), qparams.qmin, qparams.qmax).astype(qparams.storage_type)


def dequantize(q: npt.ArrayLike, qparams: QParams) -> npt.NDArray[np.float32]:
    """Map integers back to reals: ``r = S * (q - Z)``, in float32 as ONNX DequantizeLinear."""
    q = np.asarray(q)
    scale, zero_point = _broadcast(qparams, q)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def fake_quantize(x: npt.ArrayLike, qparams: QParams) -> npt.NDArray[np.float32]:
    """``dequantize(quantize(x))``: the real value the int8 model will see in place of ``x``."""
    return dequantize(quantize(x, qparams), qparams)


def quantize_multiplier(multiplier: float) -> tuple[int, int]:
    """Split a real multiplier ``M`` into ``(M0, shift)`` with ``M = M0 * 2**-(31 + shift)``.

    ``M0`` is a 32-bit integer in ``[2**30, 2**31)`` (gemmlowp/TFLite's ``QuantizeMultiplier``),
    rounded half away from zero; ``shift`` may be negative for ``M >= 1``. ``M = 0`` gives (0, 0).
    """
    if not np.isfinite(multiplier) or multiplier < 0:
        raise QuantaError(f"requantization multiplier must be finite and >= 0, got {multiplier}")
    if multiplier == 0:
        return 0, 0
    mantissa, exponent = np.frexp(np.float64(multiplier))  # multiplier = mantissa * 2**exponent
    m0 = int(np.floor(float(mantissa) * 2**31 + 0.5))
    if m0 == 2**31:  # rounding carried into the next power of two
        m0 //= 2
        exponent += 1
    return m0, -int(exponent)
