"""Layers the model keeps float (Conv, Add, Relu, Clip(0, 6)), written float in TFLite:
DEQUANTIZE of their int8 input, the float op (a Relu/ReLU6 reader fused into it), and the
QuantizeLinear after them as a QUANTIZE back to int8.

Their int8-stored weights (quanta's ``Mul(Cast(q), scale)``) stay int8 behind a DEQUANTIZE of a
constant, which TFLite evaluates once when the model loads.
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Act, Context
from quanta.tflite.ops.conv import conv_shape, emit_conv, nhwc_weight
from quanta.tflite.ops.fully_connected import fc_weight
from quanta.tflite.ops.layout import window_padding
from quanta.tflite.writer import TensorSpec, options

B = tflite.BuiltinOperator
# A Relu or Clip(0, 6) that alone reads a float Conv/Add is fused into it (its fused activation)
# and writes no operator of its own; elsewhere ``float_activation`` writes it.
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})
NONE, RELU, RELU6 = (
    tflite.ActivationFunctionType.NONE,
    tflite.ActivationFunctionType.RELU,
    tflite.ActivationFunctionType.RELU6,
)


def _activation(ctx: Context, node: onnx.NodeProto) -> int | None:
    """The TFLite activation of a Relu (RELU) or Clip(0, 6) (RELU6) node; None for any other."""
    if node.op_type not in FUSED_ACTIVATIONS:
        return None
    if node.op_type == "Relu":
        return RELU
    low = ctx.consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    high = ctx.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if low is not None and high is not None and (float(low), float(high)) == (0.0, 6.0):
        return RELU6
    return None


def _float_out(ctx: Context, node: onnx.NodeProto, shape: list[int], nhwc: bool) -> tuple[int, int]:
    """A float32 output for ``node``, with a ReLU/ReLU6 reader fused; returns (tensor,
    fused activation)."""
    out = node.output[0]
    activation = NONE
    users = ctx.index.consumers.get(out, [])
    if len(users) == 1 and out not in ctx.index.graph_outputs:
        user = users[0]
        fused = _activation(ctx, user)
        if fused is not None:
            activation = fused
            ctx.fused_away.add(user.name)
            out = user.output[0]
    y = ctx.add(TensorSpec(out, shape, np.dtype(np.float32)))
    ctx.floats[out] = Act(y, nhwc)
    return y, activation


def _int8_storage(ctx: Context, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(int8 values, per-output-channel scales) of a weight quanta stored as
    ``Mul(Cast(q), scale)`` or, with float16 scales, ``Mul(Cast(q), Cast(scale))``
    (``quanta.graph.rewrite.int8_decoder``), else None. The scales come back float32: the
    float16 ones widen exactly, and TFLite's per-channel scales are float32."""
    mul = ctx.index.producer.get(name)
    if mul is None or mul.op_type != "Mul":
        return None
    cast = ctx.index.producer.get(mul.input[0])
    if cast is None or cast.op_type != "Cast" or cast.input[0] not in ctx.initial:
        return None
    q, scale = ctx.initial[cast.input[0]], ctx.initial.get(mul.input[1])
    widen = ctx.index.producer.get(mul.input[1])
    if scale is None and widen is not None and widen.op_type == "Cast":
        scale = ctx.initial.get(widen.input[0])
        scale = None if scale is None or scale.dtype != np.float16 else scale.astype(np.float32)
    if q.dtype != np.int8 or scale is None or scale.size not in (1, q.shape[0]):
        return None
    return q, np.broadcast_to(scale.reshape(-1), (q.shape[0],))


def float_weight(ctx: Context, name: str) -> np.ndarray | None:
    """A weight's float value: a constant, or an int8 one behind a DequantizeLinear (an int8
    layer written float because TFLite cannot hold its float output in int8)."""
    if name in ctx.consts:
        return ctx.consts[name]
    dq = ctx.index.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in ctx.consts:
        return None
    return ctx.evaluate(dq)[0]


def _conv_weight(ctx: Context, name: str, w: np.ndarray, depthwise: bool) -> int:
    """The float weight tensor: a constant, or a DEQUANTIZE of the int8 values quanta stored."""
    stored = _int8_storage(ctx, name)
    if stored is None:
        return ctx.constant(f"{name}_tfl", nhwc_weight(w, depthwise).astype(np.float32))
    q, scale = stored
    data = nhwc_weight(q, depthwise)
    q_index = ctx.int8_weight(f"{name}_int8", data, scale, 3 if depthwise else 0)
    w_index = ctx.add(TensorSpec(f"{name}_tfl", list(data.shape), np.dtype(np.float32)))
    ctx.emit(B.DEQUANTIZE, [q_index], [w_index], None, 2)
    return w_index


def float_conv(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.float_of(node.input[0])
    w = float_weight(ctx, node.input[1])
    if w is None:
        raise ModelError(f"Conv {node.name!r}: its weight is not a constant")
    m, _, kh, kw = w.shape
    depthwise, multiplier = conv_shape(node, w)
    padding, x = window_padding(ctx, node, x, [kh, kw])
    w_index = _conv_weight(ctx, node.input[1], w, depthwise)
    bias = ctx.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    bias = np.zeros(m) if bias is None else bias
    b_index = ctx.constant(f"{node.name}_bias", bias.astype(np.float32))
    y, activation = _float_out(ctx, node, ctx.nhwc_shape(node.output[0]), True)
    emit_conv(ctx, node, [x.index, w_index, b_index], y, depthwise, multiplier, padding, activation)


def float_fully_connected(ctx: Context, node: onnx.NodeProto) -> None:
    """A Gemm or MatMul kept float (a classifier head kept float for speed) as a float
    FULLY_CONNECTED; its weight as decoded (an int8-stored one whose scales run along the
    output axis of a MatMul's (K, N) weight is written float32)."""
    x = ctx.float_of(node.input[0])
    w = float_weight(ctx, node.input[1])
    if w is None or len(ctx.shape_of(x)) != 2 or w.ndim != 2:
        raise ModelError(
            f"{node.op_type} {node.name!r} kept float: only a constant 2-D weight on a 2-D input "
            "has a FULLY_CONNECTED form"
        )
    w = fc_weight(ctx, node, w)
    n = w.shape[0]
    bias = ctx.consts.get(node.input[2]) if node.op_type == "Gemm" and len(node.input) > 2 else None
    w_index = ctx.constant(f"{node.input[1]}_tfl", w.astype(np.float32))
    b_index = ctx.constant(
        f"{node.name}_bias", np.broadcast_to(0.0 if bias is None else bias, (n,)).astype("f")
    )
    y, activation = _float_out(ctx, node, [ctx.shape_of(x)[0], n], False)
    builder = options("FullyConnectedOptions", FusedActivationFunction=activation)
    ctx.emit(B.FULLY_CONNECTED, [x.index, w_index, b_index], [y], builder, 5)


def float_activation(ctx: Context, node: onnx.NodeProto) -> None:
    """Relu as RELU, Clip(0, 6) as RELU6, where no float op before it could fuse it."""
    x = ctx.float_of(node.input[0])
    activation = _activation(ctx, node)
    if activation is None:
        raise ModelError(f"Clip {node.name!r}: only Relu and Clip(0, 6) have TFLite forms here")
    code = B.RELU if activation == RELU else B.RELU6
    y = ctx.add(TensorSpec(node.output[0], ctx.shape_of(x), np.dtype(np.float32)))
    ctx.floats[node.output[0]] = Act(y, x.nhwc)
    ctx.emit(code, [x.index], [y])


def quantize_float(ctx: Context, node: onnx.NodeProto) -> None:
    """A QuantizeLinear of a float tensor computed here: the float layer's way back to int8."""
    if node.output[0] in ctx.acts or node.input[0] not in ctx.floats:
        return  # already an int8 op's output grid, or the model input (handled there)
    x = ctx.floats[node.input[0]]
    y = ctx.int8(node.output[0], ctx.shape_of(x), ctx.grid(node))
    ctx.emit(B.QUANTIZE, [x.index], [y], None, 2)
    ctx.bind(node.output[0], Act(y, x.nhwc))
