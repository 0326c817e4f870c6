"""TFLite's SAME / VALID padding as ONNX's explicit ``pads`` (begin and end per spatial axis).

TensorFlow puts the odd pixel of SAME padding at the end: ``total = max((out - 1) * stride +
(kernel - 1) * dilation + 1 - in, 0)``, ``begin = total // 2``, ``end = total - begin``.
"""

from __future__ import annotations

import tflite

__all__ = ["pads"]


def pads(
    padding: int,
    in_hw: list[int],
    out_hw: list[int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int] | None = None,
) -> list[int]:
    """ONNX ``pads`` [top, left, bottom, right] for TFLite ``padding`` (tflite.Padding)."""
    if padding == tflite.Padding.VALID:
        return [0, 0, 0, 0]
    dilations = dilations or [1, 1]
    begin, end = [], []
    for n, m, k, s, d in zip(in_hw, out_hw, kernel, strides, dilations, strict=True):
        total = max((m - 1) * s + (k - 1) * d + 1 - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return [*begin, *end]
