"""Quantization parameters: the integer grid a real tensor is mapped onto.

Convention (ONNX, TFLite, PyTorch): ``r = S * (q - Z)`` with scale ``S > 0`` (float32) and zero
point ``Z`` an integer of the quantized dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from quanta.errors import QuantaError

__all__ = ["DTYPES", "MIN_SCALE", "QParams", "choose_qparams", "qrange"]

# dtype name -> (qmin, qmax, numpy storage type). int4/uint4 values are stored in int8/uint8.
DTYPES: dict[str, tuple[int, int, type[np.integer]]] = {
    "int8": (-128, 127, np.int8),
    "uint8": (0, 255, np.uint8),
    "int4": (-8, 7, np.int8),
    "uint4": (0, 15, np.uint8),
    "int16": (-32768, 32767, np.int16),
    "uint16": (0, 65535, np.uint16),
    "int32": (-(2**31), 2**31 - 1, np.int32),
}

# NOTE: the smallest scale we emit, as PyTorch's observers (float32 machine epsilon). A zero-width
# range would otherwise give S = 0 and a division by zero in QuantizeLinear.
MIN_SCALE = float(np.finfo(np.float32).eps)


def qrange(dtype: str, *, narrow: bool = False) -> tuple[int, int]:
    """The integer range of ``dtype``; ``narrow`` drops the lowest value (int8 -> [-127, 127]).

    Narrow ranges make symmetric weights exactly symmetric, as TFLite's and ORT's int8 weights.
    """
    if dtype not in DTYPES:
        raise QuantaError(
            f"quantized dtype {dtype!r} is not supported; expected one of {list(DTYPES)}"
        )
    qmin, qmax, _ = DTYPES[dtype]
    if narrow and qmin < 0:
        qmin += 1
    return qmin, qmax


@dataclass(frozen=True, eq=False)
class QParams:
    """Scale and zero point of one tensor, per tensor (``axis=None``) or per slice along ``axis``.

    Attributes:
        scale: float32, shape ``()`` per tensor or ``(C,)`` per axis.
        zero_point: integers in the dtype's storage type, same shape as ``scale``.
        dtype: quantized dtype name, a key of ``DTYPES`` ("int8", "uint8", ...).
        axis: the channel axis of a per-axis tensor, else None.
        narrow: whether the range is ``[qmin + 1, qmax]`` (symmetric int8 weights: [-127, 127]).
    """

    scale: npt.NDArray[np.float32]
    zero_point: npt.NDArray[np.integer]
    dtype: str = "int8"
    axis: int | None = None
    narrow: bool = field(default=False)

    def __post_init__(self) -> None:
        qmin, qmax = qrange(self.dtype, narrow=self.narrow)
        scale = np.asarray(self.scale, dtype=np.float32)
        zp = np.asarray(self.zero_point)
        if scale.shape != zp.shape:
            raise QuantaError(f"scale shape {scale.shape} differs from zero_point shape {zp.shape}")
        if self.axis is None and scale.ndim != 0:
            raise QuantaError(f"per-tensor QParams need a scalar scale, got shape {scale.shape}")
        if self.axis is not None and scale.ndim != 1:
            raise QuantaError(f"per-axis QParams need a 1-D scale, got shape {scale.shape}")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise QuantaError(f"scale must be finite and > 0, got {scale}")
        if not np.issubdtype(zp.dtype, np.integer) and not (
            np.all(np.isfinite(zp)) and np.all(zp == np.rint(zp))
        ):
            raise QuantaError(f"zero_point must be an integer, got {zp}")
        if np.any(zp < qmin) or np.any(zp > qmax):
            raise QuantaError(f"zero_point {zp} is outside the {self.dtype} range [{qmin}, {qmax}]")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp.astype(DTYPES[self.dtype][2]))

    @property
    def qmin(self) -> int:
        return qrange(self.dtype, narrow=self.narrow)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.dtype, narrow=self.narrow)[1]

    @property
    def storage_type(self) -> type[np.integer]:
        return DTYPES[self.dtype][2]

    def broadcast_shape(self, ndim: int) -> tuple[int, ...]:
        """The shape that makes scale/zero_point broadcast against a rank-``ndim`` tensor."""
        if self.axis is None:
            return ()
        axis = self.axis % ndim
        return tuple(-1 if i == axis else 1 for i in range(ndim))

    def __repr__(self) -> str:
        where = "per-tensor" if self.axis is None else f"axis={self.axis}"
        return f"QParams({self.dtype}, {where}, scale={self.scale}, zero_point={self.zero_point})"


def choose_qparams(
    rmin: float | npt.ArrayLike,
    rmax: float | npt.ArrayLike,
    dtype: str = "int8",
    *,
    symmetric: bool = False,
    axis: int | None = None,
    narrow: bool | None = None,
) -> QParams:
    """Choose scale and zero point that cover ``[rmin, rmax]``.

    The range is first widened to include 0 so that 0.0 is exactly representable (zero padding,
    ReLU outputs). Then, with ``[qmin, qmax]`` the dtype's range:

    - asymmetric: ``S = (rmax - rmin) / (qmax - qmin)``, ``Z = qmin - round(rmin / S)`` (half to
      even), clamped to ``[qmin, qmax]``;
    - symmetric: ``S = max(|rmin|, |rmax|) / ((qmax - qmin) / 2)`` and ``Z = 0`` for signed dtypes
      (the midpoint, e.g. 128, for unsigned). Symmetric signed ranges are narrow by default
      (int8: [-127, 127]), as TFLite and ONNX Runtime store weights.

    A zero-width range (all zeros, a constant tensor) never gives S = 0: S >= ``MIN_SCALE``.

    Args:
        rmin: smallest observed value, a scalar or one value per channel.
        rmax: largest observed value, same shape as ``rmin``.
        dtype: quantized dtype, e.g. "int8", "uint8", "int4".
        symmetric: symmetric (weights) or asymmetric (activations) mapping.
        axis: the channel axis when ``rmin``/``rmax`` are per channel.
        narrow: use ``[qmin + 1, qmax]``; defaults to ``symmetric`` for signed dtypes.

    Example:
        >>> qp = choose_qparams(-1.0, 3.0, "uint8")
        >>> float(qp.scale), int(qp.zero_point)
        (0.01568627543747425, 64)
    """
    lo = np.minimum(np.asarray(rmin, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(rmax, dtype=np.float64), 0.0)
    if lo.shape != hi.shape:
        raise QuantaError(f"rmin shape {lo.shape} differs from rmax shape {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise QuantaError(f"range must be finite to choose a scale, got [{rmin!s}, {rmax!s}]")
    if axis is None and lo.ndim != 0:
        raise QuantaError(
            f"per-tensor qparams need scalar rmin/rmax, got shape {lo.shape}; pass axis="
        )
    signed = DTYPES[dtype][0] < 0 if dtype in DTYPES else True
    if narrow is None:
        narrow = symmetric and signed
    qmin, qmax = qrange(dtype, narrow=narrow)
    if symmetric:
        bound = np.maximum(-lo, hi)
        scale = (bound / ((qmax - qmin) / 2.0)).astype(np.float32)
        scale = np.maximum(scale, np.float32(MIN_SCALE))
        zero_point = np.full(scale.shape, (qmin + qmax + 1) // 2, dtype=np.int64)
    else:
        scale = ((hi - lo) / (qmax - qmin)).astype(np.float32)
        scale = np.maximum(scale, np.float32(MIN_SCALE))
        zero_point = qmin - np.rint(lo / scale.astype(np.float64))
        zero_point = np.clip(zero_point, qmin, qmax).astype(np.int64)
    return QParams(scale, zero_point, dtype=dtype, axis=axis, narrow=narrow)
