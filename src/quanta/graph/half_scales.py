"""Float16 scales for the int8-stored weights of nodes that compute in float.

A weight stored int8 for a node kept float (``quanta.graph.weight_only``) is decoded once, when
ONNX Runtime folds ``Cast(q) * scale`` at session start. Its per-channel float32 scales are
4 bytes each, which on a depthwise 3x3 convolution is 4 bytes for every 9 int8 values: on a
0.6 MB OCR classifier (rapidocr_cls) 3,074 scales were 12 KB of a 0.17 MB file. Stored as
float16 they cost 2 bytes each and one more ``Cast`` node, and nothing is lost:

- each scale is the float16 value at or just above its float32 one, so ``|w| / s16 <= 127``
  and no weight clips; the int8 values are rounded again with that scale, so the decoded weight
  ``q * s16`` is within half a step ``s16 / 2`` of the float one, a grid at most one float16
  step (2**-10 relative) coarser than the float32 one;
- the product is taken in float32 (``Mul(Cast(q), Cast(s16))``), where it is exact: 7 bits of
  ``q`` times 11 bits of ``s16`` fit float32's 24;
- a tensor with a scale float16 cannot hold as a normal number keeps float32 scales.

Only for weight-only decoders: the scale of a DequantizeLinear feeding an int8 kernel stays
float32, as ONNX Runtime requires.
"""

from __future__ import annotations

import numpy as np

from quanta.quant.primitives import round_half_to_even

__all__ = ["CAST_BYTES", "half_scales", "scale_bytes"]

# NOTE: the extra Cast node of a float16 scale: op type, three short names (after compact QDQ)
# and its ``to`` attribute, about 33 bytes in the written file; a little more before compact.
CAST_BYTES = 36

_NORMAL = float(np.finfo(np.float16).tiny)  # 2**-14, the smallest normal float16
_LARGEST = float(np.finfo(np.float16).max)


def scale_bytes(scale: np.ndarray) -> int:
    """Bytes a decoder's scales cost in the file: 4 a float32 value; 2 a float16 one plus the
    ``Cast`` that widens them."""
    if scale.dtype == np.float16:
        return 2 * scale.size + CAST_BYTES
    return 4 * scale.size


def half_scales(
    weight: np.ndarray, q: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The int8 values and float16 scales of ``weight`` stored as ``q * scale`` (symmetric,
    ``[-127, 127]``; ``scale`` float32, shaped to broadcast against ``q``), or None where
    float16 scales would not pay (``scale_bytes``) or would not hold every scale as a normal
    float16.

    A slice whose values are all 0 decodes to 0 with any scale, so its (tiny) scale is replaced
    by the smallest normal float16 rather than refusing the tensor.
    """
    if 2 * scale.size + CAST_BYTES >= 4 * scale.size or scale.ndim != q.ndim:
        return None
    scale = np.asarray(scale, np.float32)
    shared = tuple(k for k in range(q.ndim) if scale.shape[k] == 1)  # axes a scale spans
    zero = np.all(q == 0, axis=shared, keepdims=True)  # scale's shape: one per slice
    wanted = np.where(zero, np.float32(_NORMAL), scale)
    if np.any(wanted < _NORMAL) or np.any(wanted > _LARGEST) or not np.all(np.isfinite(wanted)):
        return None
    s16 = wanted.astype(np.float16)  # nearest; one step up where that fell below
    below = s16.astype(np.float32) < wanted
    s16[below] = np.nextafter(s16[below], np.float16(np.inf))
    if np.any(np.isinf(s16)):
        return None
    w = np.asarray(weight, np.float32)
    q16 = np.clip(round_half_to_even(w / s16.astype(np.float32)), -127, 127).astype(np.int8)
    return q16, s16
