"""The values the reference executor passes between ops: integers on a grid, never floats."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quanta.errors import ModelError
from quanta.quant import QParams, dequantize

__all__ = ["QTensor", "exact_einsum", "int_matmul", "same_grid"]


@dataclass(frozen=True)
class QTensor:
    """Integers ``q`` (held in int64) meaning ``scale * (q - zero_point)`` on the grid ``qp``.

    An accumulator (a Conv's int32 sum before requantization) is a QTensor too: dtype "int32",
    zero point 0, scale ``s_in * s_w`` (per output channel when the weights are).
    """

    q: npt.NDArray[np.int64]
    qp: QParams

    @property
    def zero_point(self) -> npt.NDArray[np.int64]:
        """The zero point, shaped to broadcast against ``q``."""
        return self.qp.zero_point.astype(np.int64).reshape(self.qp.broadcast_shape(self.q.ndim))

    def centered(self) -> npt.NDArray[np.int64]:
        """``q - Z``: the integer the real value is a multiple of the scale by."""
        return self.q - self.zero_point

    def real(self) -> npt.NDArray[np.float32]:
        """The real values (for float islands and for reports, never inside an integer op)."""
        return dequantize(self.q, self.qp)


def same_grid(a: QParams, b: QParams) -> bool:
    """Whether two per-tensor grids are the same (then an op can pass integers through)."""
    return (
        a.axis is None
        and b.axis is None
        and a.dtype == b.dtype
        and np.array_equal(a.scale, b.scale)
        and np.array_equal(a.zero_point, b.zero_point)
    )


# Products of int8/uint8 values summed over K terms stay exact in float64 while
# K * max|a| * max|b| < 2**53 (K < 2.7e11 for 8-bit operands).
_EXACT = 2.0**53


def int_matmul(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``a @ b`` of integer matrices (numpy matmul broadcasting), exactly.

    NOTE: carried out by float64 BLAS, used as an exact integer dot-product engine: every
    product and partial sum is an integer below 2**53, so no rounding happens (checked). numpy's
    own int64 matmul is exact too but unblocked and ~50x slower, too slow for MobileNetV2.
    """
    k = a.shape[-1]
    bound = float(k) * float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0))
    if bound >= _EXACT:
        raise ModelError(
            f"integer matmul of depth {k} may exceed float64's exact range; operands are "
            "expected to be 8-bit"
        )
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


def exact_einsum(
    subscripts: str, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], *, depth: int
) -> npt.NDArray[np.int64]:
    """``np.einsum`` of two integer arrays summing ``depth`` products per output, exactly
    (float64 arithmetic under the same bound as ``int_matmul``)."""
    bound = float(depth) * float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0))
    if bound >= _EXACT:
        raise ModelError(
            f"integer sum of {depth} products may exceed float64's exact range; operands are "
            "expected to be 8-bit"
        )
    out = np.einsum(subscripts, a.astype(np.float64), b.astype(np.float64), optimize=True)
    return np.asarray(out).astype(np.int64)
