"""A float ONNX model -> a float TFLite model, its weights stored as float32, float16 or int8.

The classic TFLite variants of one float model, written without TensorFlow:

- ``"fp16"``: float16 weights, each behind a DEQUANTIZE to float32 (TFLite's float16
  quantization: half the size, float arithmetic).
- ``"dynamic"``: int8 weights, symmetric per output channel, given to CONV_2D, DEPTHWISE_CONV_2D
  and FULLY_CONNECTED directly; activations float32, so LiteRT runs its hybrid kernels (dynamic
  range quantization: about a quarter of the size).
- ``"float32"``: the float model itself (the reference the other two are measured against).

Layout as the int8 path (``quanta.tflite.convert``): 4-D activations NHWC, the input NHWC, a
Flatten before a fully connected layer folded into its weights; a model that takes NHWC (an
imported ``.tflite``) keeps its layout, its layout Transposes writing no operator. Ops: Conv,
Relu and Clip (fused where they can be), MaxPool, AveragePool, Flatten, Reshape, Gemm, MatMul,
Add, Softmax, Transpose, and those of ``ops.float_ops`` (Mul, Sub, Div, PRelu, Sigmoid, Tanh,
HardSwish, LeakyRelu, Pad, Concat, GlobalAveragePool, Resize).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from quanta.errors import ModelError
from quanta.tflite.context import Act
from quanta.tflite.ops import float_model as F
from quanta.tflite.ops.float_layers import float_activation
from quanta.tflite.ops.float_model import WEIGHT_STORAGE, FloatContext, float_tensor
from quanta.tflite.ops.float_ops import FLOAT_OPS
from quanta.tflite.ops.layout import float_transpose, input_layout
from quanta.tflite.writer import TensorSpec

__all__ = ["FLOAT_MODEL_HANDLERS", "WEIGHT_STORAGE", "float_onnx_to_tflite"]

FLOAT_MODEL_HANDLERS: dict[str, Callable[[FloatContext, onnx.NodeProto], None]] = {
    "Conv": F.conv,
    "Gemm": F.fully_connected,
    "MatMul": F.fully_connected,
    "MaxPool": F.pool,
    "AveragePool": F.pool,
    "Flatten": F.reshape,
    "Reshape": F.reshape,
    "Add": F.add,
    "Relu": F.activation,
    "Softmax": F.softmax,
    "Transpose": float_transpose,
    "Clip": float_activation,
    **FLOAT_OPS,
}


def float_onnx_to_tflite(model: onnx.ModelProto, weights: str = "float32") -> bytes:
    """The TFLite flatbuffer of a float ONNX model, its weights stored as ``weights``
    ("float32", "fp16" or "dynamic"; see the module doc).

    Example:
        >>> data = float_onnx_to_tflite(onnx.load("lenet.onnx"), "fp16")  # doctest: +SKIP
    """
    from quanta.graph.prepare import prepare  # BatchNormalization folded, nodes named

    ctx = FloatContext(prepare(model), weights)
    ctx.out.description = f"quanta {weights}"
    graph = ctx.plain.graph
    for value in graph.input:
        if value.name not in ctx.consts:
            _write_input(ctx, value)
    for node in graph.node:
        if node.name in ctx.constant_nodes or node.name in ctx.fused_away:
            continue
        handler = FLOAT_MODEL_HANDLERS.get(node.op_type)
        if handler is None:
            raise ModelError(
                f"node {node.name!r} is {node.op_type}, which quanta's float TFLite export does "
                f"not support; supported: {', '.join(FLOAT_MODEL_HANDLERS)}"
            )
        handler(ctx, node)
    for value in graph.output:
        _write_output(ctx, value.name)
    return ctx.out.serialize()


def _write_input(ctx: FloatContext, value: onnx.ValueInfoProto) -> None:
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError(f"input {value.name!r} is not float32; expected a float model")
    shape, nhwc = input_layout(ctx, value)  # (N, H, W, C) for a 4-D input
    x = ctx.add(TensorSpec(value.name, shape, np.dtype(np.float32)))
    ctx.out.inputs.append(x)
    ctx.floats[value.name] = Act(x, nhwc)


def _write_output(ctx: FloatContext, name: str) -> None:
    """The output tensor, after a TRANSPOSE back to NCHW for an NHWC one."""
    act = float_tensor(ctx, name)
    ctx.out.outputs.append(F.to_nchw(ctx, act, name) if act.nhwc else act.index)
