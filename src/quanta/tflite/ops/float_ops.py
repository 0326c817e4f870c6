"""Float handlers for the ops real float ``.tflite`` models use beyond ``float_model``'s: PAD,
CONCATENATION, MEAN (GlobalAveragePool), ADD/MUL/SUB/DIV (constant operands too), PRELU, the
pointwise activations (HardSigmoid as MUL, ADD + RELU6, MUL) and RESIZE_*. Each reads float
tensors and writes a float tensor; they serve both the whole-float writer
(``quanta.tflite.float_convert``: fp16 and dynamic variants) and the int8 writer's layers kept
float (an int8 input gets a DEQUANTIZE, the QuantizeLinear after writes QUANTIZE).

Layout: an ``Act`` may hold an ONNX NCHW tensor as NHWC (``Act.nhwc``); axes, pads and constant
operands are mapped onto the TFLite tensor's axes (``held``).
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import Act, Context, attr
from quanta.tflite.ops.float_layers import _float_out
from quanta.tflite.ops.layout import NCHW_TO_NHWC
from quanta.tflite.writer import OptionsBuilder, TensorSpec, options

__all__ = ["FLOAT_OPS", "held", "operand", "pad_paddings", "resize_operator"]

B = tflite.BuiltinOperator
NO_ACTIVATION = tflite.ActivationFunctionType.NONE
RELU6 = tflite.ActivationFunctionType.RELU6


def held(act: Act, rank: int) -> list[int]:
    """TFLite axis k of ``act``'s tensor is ONNX axis ``held(act)[k]``."""
    return NCHW_TO_NHWC if act.nhwc and rank == 4 else list(range(rank))


def operand(ctx: Context, name: str, like: Act | None = None) -> Act:
    """The float TFLite tensor of an ONNX tensor: computed, a constant (laid out as ``like``,
    broadcast to its rank first), or an int8 one behind a DEQUANTIZE."""
    if name in ctx.floats:
        return ctx.floats[name]
    if name in ctx.consts:
        value = ctx.consts[name].astype(np.float32)
        if like is not None and like.nhwc and value.ndim > 1:
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(NCHW_TO_NHWC)
        nhwc = like is not None and like.nhwc and value.ndim == 4
        return Act(ctx.constant(f"{name}_tfl", value), nhwc)
    return ctx.float_of(name)


def _simple_out(ctx: Context, node: onnx.NodeProto, shape: list[int], nhwc: bool) -> int:
    y = ctx.add(TensorSpec(node.output[0], shape, np.dtype(np.float32)))
    ctx.floats[node.output[0]] = Act(y, nhwc)
    return y


_BINARY = {
    "Add": (B.ADD, "AddOptions"),
    "Mul": (B.MUL, "MulOptions"),
    "Sub": (B.SUB, "SubOptions"),
    "Div": (B.DIV, "DivOptions"),
}


def binary(ctx: Context, node: onnx.NodeProto) -> None:
    """Add, Mul, Sub, Div as ADD / MUL / SUB / DIV, either operand computed, int8 (behind a
    DEQUANTIZE) or a constant (a following Relu or ReLU6 fused)."""
    lead_name = next((n for n in node.input if n not in ctx.consts), node.input[0])
    lead = operand(ctx, lead_name)
    a, b = (operand(ctx, n, lead) for n in node.input)
    shape = ctx.shape_of(a if len(ctx.shape_of(a)) >= len(ctx.shape_of(b)) else b)
    y, activation = _float_out(ctx, node, shape, lead.nhwc)
    code, table = _BINARY[node.op_type]
    ctx.emit(code, [a.index, b.index], [y], options(table, FusedActivationFunction=activation))


def softmax(ctx: Context, node: onnx.NodeProto) -> None:
    """Softmax over the last axis as SOFTMAX (TFLite normalizes over the last axis only)."""
    x = operand(ctx, node.input[0])
    shape = ctx.shape_of(x)
    if ctx.tflite_axis(node, len(shape), x.nhwc) != len(shape) - 1:
        raise ModelError(f"Softmax {node.name!r}: TFLite normalizes over the last axis only")
    y = _simple_out(ctx, node, shape, x.nhwc)
    ctx.emit(B.SOFTMAX, [x.index], [y], options("SoftmaxOptions", Beta=1.0))


def identity(ctx: Context, node: onnx.NodeProto) -> None:
    """Identity writes nothing: its output is its input's tensor."""
    ctx.floats[node.output[0]] = operand(ctx, node.input[0])


def prelu(ctx: Context, node: onnx.NodeProto) -> None:
    x = operand(ctx, node.input[0])
    slope = operand(ctx, node.input[1], x)
    y = _simple_out(ctx, node, ctx.shape_of(x), x.nhwc)
    ctx.emit(B.PRELU, [x.index, slope.index], [y])


_UNARY = {"Sigmoid": B.LOGISTIC, "Tanh": B.TANH, "HardSwish": B.HARD_SWISH}


def unary(ctx: Context, node: onnx.NodeProto) -> None:
    """Sigmoid, Tanh, HardSwish as LOGISTIC, TANH, HARD_SWISH; LeakyRelu as LEAKY_RELU."""
    x = operand(ctx, node.input[0])
    y = _simple_out(ctx, node, ctx.shape_of(x), x.nhwc)
    if node.op_type == "LeakyRelu":
        alpha = float(attr(node, "alpha", 0.01))  # type: ignore[arg-type]
        ctx.emit(B.LEAKY_RELU, [x.index], [y], options("LeakyReluOptions", Alpha=alpha))
    else:
        ctx.emit(_UNARY[node.op_type], [x.index], [y])


def hard_sigmoid(ctx: Context, node: onnx.NodeProto) -> None:
    """HardSigmoid, ``clip(alpha * x + beta, 0, 1)``, which TFLite has no operator for, as
    ``relu6(6 alpha * x + 6 beta) / 6``: MUL, ADD with RELU6 fused, MUL."""
    x = operand(ctx, node.input[0])
    alpha = float(attr(node, "alpha", 0.2))  # type: ignore[arg-type]
    beta = float(attr(node, "beta", 0.5))  # type: ignore[arg-type]
    shape, out = ctx.shape_of(x), node.output[0]
    steps = [
        (B.MUL, "MulOptions", 6 * alpha, NO_ACTIVATION, f"{out}_scaled"),
        (B.ADD, "AddOptions", 6 * beta, RELU6, f"{out}_six"),
        (B.MUL, "MulOptions", 1 / 6, NO_ACTIVATION, None),
    ]
    source = x.index
    for i, (code, table, value, activation, name) in enumerate(steps):
        k = ctx.constant(f"{out}_k{i}", np.array([value], np.float32))
        y = (
            ctx.add(TensorSpec(name, shape, np.dtype(np.float32)))
            if name is not None
            else _simple_out(ctx, node, shape, x.nhwc)
        )
        ctx.emit(code, [source, k], [y], options(table, FusedActivationFunction=activation))
        source = y


def pad_paddings(ctx: Context, node: onnx.NodeProto, x: Act) -> tuple[np.ndarray, list[int]]:
    """(TFLite paddings (rank, 2), output shape) of a zero, constant-mode Pad of ``x``."""
    pads = ctx.consts.get(node.input[1]) if len(node.input) > 1 else None
    value = ctx.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if pads is None or attr(node, "mode", b"constant") not in (b"constant", "constant"):
        raise ModelError(f"Pad {node.name!r}: only constant pads of constant mode have a PAD form")
    if (value is not None and float(value) != 0.0) or (len(node.input) > 3 and node.input[3]):
        raise ModelError(f"Pad {node.name!r}: only zero padding on every axis has a PAD form")
    rank = len(ctx.shape_of(x))
    paddings = np.array([[pads[a], pads[a + rank]] for a in held(x, rank)], np.int32)
    shape = [s + int(p.sum()) for s, p in zip(ctx.shape_of(x), paddings, strict=True)]
    return paddings, shape


def pad(ctx: Context, node: onnx.NodeProto) -> None:
    """A constant-mode Pad with zeros as PAD; the pads mapped onto the TFLite axes."""
    x = operand(ctx, node.input[0])
    paddings, shape = pad_paddings(ctx, node, x)
    y = _simple_out(ctx, node, shape, x.nhwc)
    p_index = ctx.constant(f"{node.name}_paddings", paddings)
    ctx.emit(B.PAD, [x.index, p_index], [y], options("PadOptions"))


def concat(ctx: Context, node: onnx.NodeProto) -> None:
    lead = operand(ctx, next(n for n in node.input if n not in ctx.consts))
    acts = [operand(ctx, n, lead) for n in node.input]
    if len({a.nhwc for a in acts}) != 1:
        raise ModelError(f"Concat {node.name!r}: inputs in different layouts")
    shapes = [ctx.shape_of(a) for a in acts]
    axis = ctx.tflite_axis(node, len(shapes[0]), acts[0].nhwc)
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for s in shapes)
    y = _simple_out(ctx, node, shape, acts[0].nhwc)
    builder = options("ConcatenationOptions", Axis=axis)
    ctx.emit(B.CONCATENATION, [a.index for a in acts], [y], builder)


def global_average_pool(ctx: Context, node: onnx.NodeProto) -> None:
    """GlobalAveragePool as MEAN over the spatial axes, keeping the dims."""
    x = operand(ctx, node.input[0])
    shape = ctx.shape_of(x)
    spatial = [1, 2] if x.nhwc else [2, 3]
    axes = ctx.constant(f"{node.name}_axes", np.array(spatial, np.int32))
    out = [1 if k in spatial else d for k, d in enumerate(shape)]
    y = _simple_out(ctx, node, out, x.nhwc)
    ctx.emit(B.MEAN, [x.index, axes], [y], options("ReducerOptions", KeepDims=True))


def resize_operator(
    ctx: Context, node: onnx.NodeProto, x: Act
) -> tuple[int, list[int], list[int], OptionsBuilder, int]:
    """(TFLite operator, NHWC output shape, extra input (the size constant), options, version)
    of a Resize: linear or nearest to constant sizes, on H and W of an NHWC-held tensor; the
    inverse of the TFLite reader's mapping."""
    dims = ctx.shapes.get(node.output[0])
    mode = attr(node, "mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    coords = attr(node, "coordinate_transformation_mode", b"half_pixel")
    coords = coords.decode() if isinstance(coords, bytes) else str(coords)
    known = {"align_corners", "half_pixel", "tf_half_pixel_for_nn", "asymmetric"}
    if not x.nhwc or dims is None or None in dims or mode not in ("linear", "nearest"):
        raise ModelError(f"Resize {node.name!r}: only a 2-D linear or nearest Resize to known "
                         "sizes has a TFLite form")  # fmt: skip
    if coords not in known:
        raise ModelError(f"Resize {node.name!r}: coordinate mode {coords!r} has no TFLite form")
    _, c, h, w = (int(d) for d in dims)  # type: ignore[arg-type]
    size = ctx.constant(f"{node.name}_size", np.array([h, w], np.int32))
    align, half = coords == "align_corners", coords in ("half_pixel", "tf_half_pixel_for_nn")
    if mode == "linear":
        code, table = B.RESIZE_BILINEAR, "ResizeBilinearOptions"
    else:
        code, table = B.RESIZE_NEAREST_NEIGHBOR, "ResizeNearestNeighborOptions"
    builder = options(table, AlignCorners=align, HalfPixelCenters=half)
    return code, [ctx.shape_of(x)[0], h, w, c], [size], builder, 3 if half else 1


def resize(ctx: Context, node: onnx.NodeProto) -> None:
    x = operand(ctx, node.input[0])
    code, shape, extra, builder, version = resize_operator(ctx, node, x)
    y = _simple_out(ctx, node, shape, True)
    ctx.emit(code, [x.index, *extra], [y], builder, version)


FLOAT_OPS = {
    "Add": binary,
    "Mul": binary,
    "Sub": binary,
    "Div": binary,
    "PRelu": prelu,
    "Identity": identity,
    "Softmax": softmax,
    "Sigmoid": unary,
    "Tanh": unary,
    "HardSwish": unary,
    "HardSigmoid": hard_sigmoid,
    "LeakyRelu": unary,
    "Pad": pad,
    "Concat": concat,
    "GlobalAveragePool": global_average_pool,
    "Resize": resize,
}
