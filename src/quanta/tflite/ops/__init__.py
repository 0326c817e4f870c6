"""TFLite op handlers, one file per op family, in two registries keyed by ONNX op type.

``HANDLERS`` holds the ops written on int8 (the QDQ path): an ``Int8Op`` names the handler and
which inputs must be int8 for the node to run int8. ``FLOAT_HANDLERS`` holds the ops written
float, between a DEQUANTIZE and a QUANTIZE, for layers the model keeps float. A node runs int8
when its data inputs are int8 TFLite tensors (``ctx.acts``), else it takes the float path.
``ABSORBED`` and ``FUSED_ACTIVATIONS`` name the op types that write no operator of their own.

A handler is ``handler(ctx, node) -> None``: it reads its inputs with ``ctx.act_of`` (int8) and
adds tensors and operators through ``ctx`` (``quanta.tflite.context``) in the order TFLite runs
them; its int8 output tensor comes from ``ctx.output_act``, which takes the grid of the
QuantizeLinear after the node.

Adding an op (say HardSwish, as TFLite's HARD_SWISH on int8):

1. Write ``hard_swish(ctx, node)`` in the family's file here (or a new file): the input from
   ``ctx.act_of(node.input[0])``, the output from ``ctx.output_act(node, shape, x.nhwc)``, then
   ``ctx.emit(tflite.BuiltinOperator.HARD_SWISH, [x.index], [y])`` (options with
   ``quanta.tflite.writer.options``).
2. Add one entry: ``"HardSwish": Int8Op(hard_swish, data_inputs=1)`` in ``HANDLERS`` (or the
   handler in ``FLOAT_HANDLERS`` for a float layer).
3. Test it in ``tests/tflite_export``: LiteRT runs the file and agrees with ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from quanta.tflite.context import Context
from quanta.tflite.ops.activation import leaky_relu
from quanta.tflite.ops.concat import concat
from quanta.tflite.ops.conv import conv
from quanta.tflite.ops.elementwise import elementwise
from quanta.tflite.ops.float_layers import (
    FUSED_ACTIVATIONS,
    float_activation,
    float_conv,
    float_fully_connected,
    quantize_float,
)
from quanta.tflite.ops.float_model import pool as float_pool
from quanta.tflite.ops.float_model import reshape as float_reshape
from quanta.tflite.ops.float_ops import FLOAT_OPS
from quanta.tflite.ops.fully_connected import fully_connected
from quanta.tflite.ops.layout import float_transpose, reshape, transpose
from quanta.tflite.ops.mean import global_average_pool
from quanta.tflite.ops.mover import pad, resize
from quanta.tflite.ops.pool import pool
from quanta.tflite.ops.probability import probability

__all__ = [
    "ABSORBED",
    "FLOAT_HANDLERS",
    "FUSED_ACTIVATIONS",
    "HANDLERS",
    "Handler",
    "Int8Op",
    "quantize_float",
]

Handler = Callable[[Context, onnx.NodeProto], None]


@dataclass(frozen=True)
class Int8Op:
    """How the int8 path writes one ONNX op type."""

    write: Handler
    # how many of the node's non-constant inputs must be int8 for it to run int8 (None: all)
    data_inputs: int | None
    # input 0 is int8 and input 1 an int8 weight (a DequantizeLinear of a constant)
    weighted: bool = False


HANDLERS: dict[str, Int8Op] = {
    "Conv": Int8Op(conv, 1, weighted=True),
    "Gemm": Int8Op(fully_connected, 1, weighted=True),
    "MatMul": Int8Op(fully_connected, 1, weighted=True),
    "MaxPool": Int8Op(pool, 1),
    "AveragePool": Int8Op(pool, 1),
    "GlobalAveragePool": Int8Op(global_average_pool, 1),
    "Flatten": Int8Op(reshape, 1),
    "Reshape": Int8Op(reshape, 1),
    "Add": Int8Op(elementwise, 2),
    "Mul": Int8Op(elementwise, 2),
    "Concat": Int8Op(concat, None),
    "Softmax": Int8Op(probability, 1),
    "Sigmoid": Int8Op(probability, 1),
    "LeakyRelu": Int8Op(leaky_relu, 1),
    "Transpose": Int8Op(transpose, 1),
    "Pad": Int8Op(pad, 1),
    "Resize": Int8Op(resize, 1),
}

FLOAT_HANDLERS: dict[str, Handler] = {
    "Conv": float_conv,
    "Gemm": float_fully_connected,
    "MatMul": float_fully_connected,
    "Add": FLOAT_OPS["Add"],
    "Relu": float_activation,
    "Clip": float_activation,
    "Transpose": float_transpose,
    "PRelu": FLOAT_OPS["PRelu"],
    "Identity": FLOAT_OPS["Identity"],
    "Softmax": FLOAT_OPS["Softmax"],
    "Pad": FLOAT_OPS["Pad"],
    "Resize": FLOAT_OPS["Resize"],
    "HardSwish": FLOAT_OPS["HardSwish"],
    "HardSigmoid": FLOAT_OPS["HardSigmoid"],
    "Tanh": FLOAT_OPS["Tanh"],
    "Mul": FLOAT_OPS["Mul"],
    "Sub": FLOAT_OPS["Sub"],
    "Div": FLOAT_OPS["Div"],
    "Sigmoid": FLOAT_OPS["Sigmoid"],
    "LeakyRelu": FLOAT_OPS["LeakyRelu"],
    "GlobalAveragePool": FLOAT_OPS["GlobalAveragePool"],
    "Concat": FLOAT_OPS["Concat"],
    "MaxPool": float_pool,
    "AveragePool": float_pool,
    "Flatten": float_reshape,
    "Reshape": float_reshape,
}

# Op types with no TFLite operator of their own. A DequantizeLinear, and the QuantizeLinear after
# an int8 op, become the grid of the int8 tensor they stand for; a QuantizeLinear of a float
# layer's output is written as QUANTIZE (``quantize_float``); a Constant is folded. (Any node
# whose inputs are all constants, such as the Cast and Mul that decode an int8-stored weight, is
# evaluated once whatever its type, and the file stores the result.)
ABSORBED = frozenset({"QuantizeLinear", "DequantizeLinear", "Constant"})
