"""Handlers for a whole float model (``quanta.tflite.float_convert``): every tensor float32,
each weight stored as the variant asks (``FloatContext.weights``).

- ``"float32"``: float32 constants.
- ``"fp16"``: float16 constants, each behind a DEQUANTIZE to float32 that TFLite evaluates once
  at load (TFLite's float16 quantization).
- ``"dynamic"``: int8 constants, symmetric (``r = S·q``, ``q`` in [-127, 127], rounded half to
  even), per output channel for CONV_2D and FULLY_CONNECTED, given to the op directly: LiteRT
  then runs its hybrid kernels, which quantize the float input on the fly (dynamic range), with
  TensorFlow's converter's options: FULLY_CONNECTED quantizes its input asymmetrically
  (``asymmetric_quantize_inputs``, version 12), CONV_2D is version 5. A
  weight of fewer than ``MIN_ELEMENTS`` (1,024) values stays float32, as TensorFlow's converter
  leaves it: a hybrid kernel quantizes its input on every call, which on a small layer (LeNet's
  first 5x5 convolution) costs more than its int8 arithmetic saves, for a few hundred bytes.

Biases stay float32 in every variant, as TensorFlow's converter writes them.
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.quant import choose_qparams, quantize
from quanta.tflite.context import Act, Context, attr
from quanta.tflite.ops.conv import conv_shape, emit_conv, nhwc_weight
from quanta.tflite.ops.float_layers import _float_out
from quanta.tflite.ops.float_ops import operand
from quanta.tflite.ops.fully_connected import fc_weight
from quanta.tflite.ops.layout import emit_reshape, window_padding
from quanta.tflite.writer import TensorSpec, options

# TensorFlow's converter keeps a weight of fewer values float32: its hybrid kernels cost more
# than they save on one that small (LeNet's first conv was the latency gap).
MIN_ELEMENTS = 1024

__all__ = ["WEIGHT_STORAGE", "FloatContext", "float_tensor"]

B = tflite.BuiltinOperator
WEIGHT_STORAGE = ("float32", "fp16", "dynamic")


class FloatContext(Context):
    """A ``Context`` for a float model, with how its weights are stored."""

    def __init__(self, model: onnx.ModelProto, weights: str) -> None:
        if weights not in WEIGHT_STORAGE:
            raise ModelError(f"weights={weights!r}; expected one of {', '.join(WEIGHT_STORAGE)}")
        super().__init__(model, {}, ())
        self.weights = weights

    def stored_weight(self, name: str, w: np.ndarray, axis: int) -> int:
        """The weight tensor an op reads: float32, float16 behind a DEQUANTIZE, or int8 with
        per-channel scales along ``axis`` (a hybrid kernel's filter)."""
        w = w.astype(np.float32)
        if self.weights == "float32":
            return self.constant(f"{name}_tfl", w)
        if self.weights == "fp16":
            half = self.constant(f"{name}_fp16", w.astype(np.float16))
            y = self.add(TensorSpec(f"{name}_tfl", list(w.shape), np.dtype(np.float32)))
            self.emit(B.DEQUANTIZE, [half], [y], None, 3)
            return y
        if w.size < MIN_ELEMENTS:
            return self.constant(f"{name}_tfl", w)
        reduce = tuple(i for i in range(w.ndim) if i != axis)
        bound = np.abs(w).max(axis=reduce)
        qp = choose_qparams(-bound, bound, "int8", symmetric=True, axis=axis)
        return self.int8_weight(f"{name}_tfl", quantize(w, qp), np.atleast_1d(qp.scale), axis)

    def is_int8(self, index: int) -> bool:
        """Whether tensor ``index`` holds int8 (a hybrid kernel's weight)."""
        return self.out.tensors[index].dtype == np.int8


def float_tensor(ctx: Context, name: str) -> Act:
    """The float32 TFLite tensor of an ONNX tensor (a constant is written once)."""
    if name in ctx.floats:
        return ctx.floats[name]
    if name in ctx.consts:
        return ctx.float_constant(name)
    raise ModelError(f"tensor {name!r} has no float TFLite tensor; is its producer supported?")


def _weight(ctx: FloatContext, node: onnx.NodeProto, index: int) -> np.ndarray:
    w = ctx.consts.get(node.input[index])
    if w is None:
        raise ModelError(f"{node.op_type} {node.name!r}: its weight is not a constant")
    return w


def _bias(ctx: Context, node: onnx.NodeProto, index: int, channels: int) -> int:
    name = node.input[index] if len(node.input) > index and node.input[index] else None
    bias = ctx.consts.get(name) if name else np.zeros(channels)
    if bias is None:
        raise ModelError(f"{node.op_type} {node.name!r}: its bias is not a constant")
    return ctx.constant(f"{node.name}_bias", np.broadcast_to(bias, (channels,)).astype(np.float32))


def conv(ctx: FloatContext, node: onnx.NodeProto) -> None:
    x = float_tensor(ctx, node.input[0])
    w = _weight(ctx, node, 1)
    m, _, kh, kw = w.shape
    depthwise, multiplier = conv_shape(node, w)
    padding, x = window_padding(ctx, node, x, [kh, kw])
    w_index = ctx.stored_weight(node.input[1], nhwc_weight(w, depthwise), 3 if depthwise else 0)
    b_index = _bias(ctx, node, 2, m)
    batch = ctx.shape_of(x)[0]
    y, activation = _float_out(ctx, node, ctx.nhwc_shape(node.output[0], batch), True)
    # a hybrid (int8 per-channel weight, float input) CONV_2D is version 5, as TensorFlow writes it
    version = 5 if ctx.is_int8(w_index) and not depthwise else 3
    emit_conv(
        ctx, node, [x.index, w_index, b_index], y, depthwise, multiplier, padding, activation,
        version,
    )  # fmt: skip


def fully_connected(ctx: FloatContext, node: onnx.NodeProto) -> None:
    x = float_tensor(ctx, node.input[0])
    w = fc_weight(ctx, node, _weight(ctx, node, 1))
    n = w.shape[0]
    w_index = ctx.stored_weight(node.input[1], w, 0)
    # a MatMul has no bias input: zeros (an Add after it is written as ADD)
    b_index = _bias(ctx, node, 2 if node.op_type == "Gemm" else len(node.input), n)
    y, activation = _float_out(ctx, node, [ctx.shape_of(x)[0], n], False)
    if ctx.is_int8(w_index):
        # NOTE: as TensorFlow's converter writes a hybrid FULLY_CONNECTED: the float input is
        # quantized asymmetrically (a ReLU output uses all 256 levels, not 128), version 12
        # (per-channel hybrid), so LiteRT's builtin kernel computes what it computes for
        # TensorFlow's file (XNNPACK, LiteRT's default, gave the same output both ways)
        builder = options(
            "FullyConnectedOptions", FusedActivationFunction=activation,
            AsymmetricQuantizeInputs=True,
        )  # fmt: skip
        ctx.emit(B.FULLY_CONNECTED, [x.index, w_index, b_index], [y], builder, 12)
        return
    builder = options("FullyConnectedOptions", FusedActivationFunction=activation)
    ctx.emit(B.FULLY_CONNECTED, [x.index, w_index, b_index], [y], builder, 5)


def pool(ctx: Context, node: onnx.NodeProto) -> None:
    """MaxPool / AveragePool as MAX_POOL_2D / AVERAGE_POOL_2D on float (also for the int8
    writer's pools kept float, whose int8 input gets a DEQUANTIZE)."""
    x = operand(ctx, node.input[0])
    kernel = list(attr(node, "kernel_shape", []))  # type: ignore[call-overload]
    strides = list(attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
    padding, x = window_padding(ctx, node, x, kernel)
    shape = ctx.nhwc_shape(node.output[0], ctx.shape_of(x)[0])
    y, activation = _float_out(ctx, node, shape, True)
    (kh, kw), (sh, sw) = kernel, strides
    builder = options(
        "Pool2DOptions", Padding=padding, StrideW=sw, StrideH=sh, FilterWidth=kw,
        FilterHeight=kh, FusedActivationFunction=activation,
    )  # fmt: skip
    code = B.MAX_POOL_2D if node.op_type == "MaxPool" else B.AVERAGE_POOL_2D
    ctx.emit(code, [x.index], [y], builder)


def to_nchw(ctx: Context, act: Act, prefix: str) -> int:
    """A float NCHW copy of the NHWC tensor ``act`` (a TRANSPOSE)."""
    n, h, w, c = ctx.shape_of(act)
    y = ctx.add(TensorSpec(f"{prefix}_nchw", [n, c, h, w], np.dtype(np.float32)))
    perm = ctx.constant(f"{prefix}_perm", np.array([0, 3, 1, 2], np.int32))
    ctx.emit(B.TRANSPOSE, [act.index, perm], [y], options("TransposeOptions"))
    return y


def reshape(ctx: Context, node: onnx.NodeProto) -> None:
    """Flatten and Reshape as RESHAPE, any batch. An NHWC input read only by Gemm/MatMul needs
    no TRANSPOSE: the (C, H, W) -> (H, W, C) column order is folded into their weights; nor does
    one of 1 x 1 pixels, whose two orders are one."""
    x = operand(ctx, node.input[0])
    readers = ctx.index.consumers.get(node.output[0], [])
    fold = x.nhwc and bool(readers) and all(r.op_type in ("Gemm", "MatMul") for r in readers)
    transpose = x.nhwc and not fold and ctx.shape_of(x)[1:3] != [1, 1]
    source = to_nchw(ctx, x, node.name) if transpose else x.index
    shape_in = ctx.shape_of(x)
    dims = ctx.shapes.get(node.output[0])
    batch, features = shape_in[0], int(np.prod(shape_in[1:]))
    shape = (
        [batch, features]
        if dims is None or len(dims) == 2
        else [batch if d is None else d for d in dims]
    )
    if fold:
        _, h, w, c = shape_in
        ctx.folded[node.output[0]] = (c, h, w)
    y = ctx.add(TensorSpec(node.output[0], shape, np.dtype(np.float32)))
    ctx.floats[node.output[0]] = Act(y, False)
    emit_reshape(ctx, node.name, source, y, shape)


def add(ctx: FloatContext, node: onnx.NodeProto) -> None:
    a, b = float_tensor(ctx, node.input[0]), float_tensor(ctx, node.input[1])
    if a.nhwc != b.nhwc and len(ctx.shape_of(b if a.nhwc else a)) > 1:
        raise ModelError(f"Add {node.name!r}: an NHWC and an NCHW operand cannot be added here")
    lead = a if node.input[0] not in ctx.consts else b
    y, activation = _float_out(ctx, node, ctx.shape_of(lead), lead.nhwc)
    builder = options("AddOptions", FusedActivationFunction=activation)
    ctx.emit(B.ADD, [a.index, b.index], [y], builder)


def activation(ctx: FloatContext, node: onnx.NodeProto) -> None:
    """Relu as RELU where no op before it could fuse it."""
    x = float_tensor(ctx, node.input[0])
    y = ctx.add(TensorSpec(node.output[0], ctx.shape_of(x), np.dtype(np.float32)))
    ctx.floats[node.output[0]] = Act(y, x.nhwc)
    ctx.emit(B.RELU, [x.index], [y])


def softmax(ctx: FloatContext, node: onnx.NodeProto) -> None:
    x = float_tensor(ctx, node.input[0])
    shape = ctx.shape_of(x)
    if ctx.tflite_axis(node, len(shape), x.nhwc) != len(shape) - 1:
        raise ModelError(f"Softmax {node.name!r}: TFLite normalizes over the last axis only")
    y = ctx.add(TensorSpec(node.output[0], shape, np.dtype(np.float32)))
    ctx.floats[node.output[0]] = Act(y, x.nhwc)
    ctx.emit(B.SOFTMAX, [x.index], [y], options("SoftmaxOptions", Beta=1.0))
