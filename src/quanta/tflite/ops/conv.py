"""Conv as CONV_2D, or DEPTHWISE_CONV_2D when every group has one input channel.

Weights are transposed once to TFLite's layout: OIHW -> OHWI, or 1HW(C*M) for a depthwise
convolution (then quantized along axis 3). The int32 bias is on ``s_in * s_w[c]``.
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Context, attr
from quanta.tflite.ops.layout import window_padding
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def conv_shape(node: onnx.NodeProto, w: np.ndarray) -> tuple[bool, int]:
    """(depthwise, depth multiplier) of a Conv with OIHW weights ``w``."""
    m, cg = w.shape[:2]
    group = int(attr(node, "group", 1))  # type: ignore[call-overload]
    if group > 1 and cg != 1:
        raise ModelError(f"Conv {node.name!r}: grouped convolution has no TFLite builtin")
    return group > 1, m // group


def nhwc_weight(w: np.ndarray, depthwise: bool) -> np.ndarray:
    """OIHW -> OHWI (CONV_2D), or 1HW(C*M) (DEPTHWISE_CONV_2D)."""
    m, _, kh, kw = w.shape
    return w.reshape(m, kh, kw).transpose(1, 2, 0)[None] if depthwise else w.transpose(0, 2, 3, 1)


def emit_conv(
    ctx: Context,
    node: onnx.NodeProto,
    inputs: list[int],
    y: int,
    depthwise: bool,
    multiplier: int,
    padding: int,
    activation: int = tflite.ActivationFunctionType.NONE,
    version: int = 3,
) -> None:
    """The CONV_2D / DEPTHWISE_CONV_2D operator itself (int8 or float, by its tensors)."""
    sh, sw = list(attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
    dh, dw = list(attr(node, "dilations", [1, 1]))  # type: ignore[call-overload]
    table = "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions"
    fields: dict[str, object] = {
        "Padding": padding,
        "StrideW": sw,
        "StrideH": sh,
        "DilationWFactor": dw,
        "DilationHFactor": dh,
        "FusedActivationFunction": activation,
    }
    if depthwise:
        fields["DepthMultiplier"] = multiplier
    code = B.DEPTHWISE_CONV_2D if depthwise else B.CONV_2D
    ctx.emit(code, inputs, [y], options(table, **fields), version)


def conv(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    w, w_scale = ctx.weight(node.input[1])
    m, _, kh, kw = w.shape
    depthwise, multiplier = conv_shape(node, w)
    padding, x = window_padding(ctx, node, x, [kh, kw])
    scale = np.float32(ctx.grid_of(x.index)[0]) * w_scale.astype(np.float32)
    data = nhwc_weight(w, depthwise)
    channels = np.broadcast_to(w_scale, (m,))
    w_index = ctx.int8_weight(f"{node.input[1]}_tfl", data, channels, 3 if depthwise else 0)
    b_index = ctx.bias(node.input[2] if len(node.input) > 2 and node.input[2] else None, m, scale)
    y = ctx.output_act(node, ctx.nhwc_shape(node.output[0]), True)
    emit_conv(ctx, node, [x.index, w_index, b_index], y, depthwise, multiplier, padding)
