"""What an AVX2 CPU without VNNI computes: u8 x s8 products added in pairs in saturating int16.

ONNX Runtime's x86 integer GEMM (MLAS) on AVX2 multiplies unsigned 8-bit activations by signed
8-bit weights with ``vpmaddubsw``, which adds each pair of neighbouring products along the
reduction axis into an int16 *with saturation*, then ``vpmaddwd`` adds those pairs exactly into
int32. Two products of 255 x 127 make 64,770 > 32,767: with full-range weights the sum can clip.
VNNI CPUs (``vpdpbusd``) and ARM accumulate in int32 directly and never clip.

``pairwise_saturating_matmul`` reproduces the first step exactly for a given pairing (the
neighbours along K in the order the kernel reads it: the natural order for Gemm/MatMul, and
(kh, kw, C_in) for a convolution lowered to a GEMM in NHWC). int8 activations are first moved
to uint8 (``q + 128``, zero point + 128), as ONNX Runtime does for its x86 kernels. The exact
result is what the reference computes otherwise; the difference is the saturation's damage.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["INT16_MAX", "INT16_MIN", "pairwise_saturating_matmul"]

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
_CHUNK_VALUES = 1 << 23  # products held at once (64 MB of int64)


def pairwise_saturating_matmul(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """``a (M, K) @ b (K, N)`` with neighbouring products along K summed in saturating int16."""
    m, k = a.shape
    n = b.shape[1]
    if k % 2:
        a = np.concatenate([a, np.zeros((m, 1), np.int64)], axis=1)
        b = np.concatenate([b, np.zeros((1, n), np.int64)], axis=0)
        k += 1
    rows = max(1, _CHUNK_VALUES // max(k * n, 1))
    out = np.empty((m, n), np.int64)
    for start in range(0, m, rows):
        products = a[start : start + rows, :, None] * b[None, :, :]  # (r, K, N)
        pairs = products.reshape(products.shape[0], k // 2, 2, n).sum(axis=2)
        out[start : start + rows] = np.clip(pairs, INT16_MIN, INT16_MAX).sum(axis=1)
    return out
