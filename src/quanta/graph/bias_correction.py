"""Bias correction (Nagel et al. 2019, "Data-Free Quantization", analytic form).

Rounding a weight ``W`` to ``Wq`` shifts the layer's expected output by ``(Wq - W) · E[x]``; a
depthwise 3x3 filter has only 9 weights, so the rounding errors of one channel do not average out
and the shift is systematic. Adding ``(W - Wq) · E[x]`` to the bias removes it, with ``E[x]`` the
per-channel mean of the layer's float input over the calibration data. (Zero padding at the
borders makes the true mean slightly smaller there; the interior dominates.)

Measured on torchvision's MobileNetV2 with int8 weights alone: mean logit cosine to the float
model 0.984 without correction, 0.998 with it.
"""

from __future__ import annotations

import numpy as np
import onnx

from quanta.graph.ops import get_attr
from quanta.opfacts import FACTS

__all__ = ["bias_shift", "MEAN_AXIS"]

# The channel axis of each corrected op's input: NCHW for Conv, (M, K) for Gemm.
MEAN_AXIS = {
    op: facts.bias_correction_axis
    for op, facts in FACTS.items()
    if facts.bias_correction_axis is not None
}


def bias_shift(
    node: onnx.NodeProto, weight: np.ndarray, quantized: np.ndarray, input_mean: np.ndarray
) -> np.ndarray | None:
    """``(W - Wq) · E[x]`` per output channel, or None for an op or layout it does not cover.

    Args:
        node: the Conv or Gemm.
        weight: the float weight; ``quantized``: the dequantized int8 weight, same shape.
        input_mean: per-channel mean of the node's input 0 (``MEAN_AXIS`` axis).
    """
    err = weight.astype(np.float64) - quantized.astype(np.float64)
    mean = np.asarray(input_mean, np.float64)
    if node.op_type == "Conv":
        groups = int(get_attr(node, "group", 1))
        out_ch, in_per_group = err.shape[0], err.shape[1]
        if mean.shape != (in_per_group * groups,):
            return None
        per_tap = err.reshape(out_ch, in_per_group, -1).sum(axis=2)  # (O, I/g): sum over kernel
        group_of = np.arange(out_ch) // (out_ch // groups)  # (O,)
        means = mean.reshape(groups, in_per_group)[group_of]  # (O, I/g)
        return (per_tap * means).sum(axis=1)
    if node.op_type == "Gemm" and err.ndim == 2:
        if get_attr(node, "transA", 0):
            return None
        err_kn = err.T if get_attr(node, "transB", 0) else err  # (K, N)
        if mean.shape != (err_kn.shape[0],):
            return None
        return mean @ err_kn
    return None
