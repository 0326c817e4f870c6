"""Softmax and Sigmoid as SOFTMAX / LOGISTIC on int8, with the output grid TFLite fixes for
both, ``PROBABILITY_GRID`` = (1/256, -128).

quanta keeps Softmax and Sigmoid float in ONNX; the int8 grid of their input comes from the op
before (``Context.output_act``, measured by ``--calibration``).
"""

from __future__ import annotations

import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import PROBABILITY_GRID, Act, Context, attr
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def probability(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    shape = ctx.shape_of(x)
    if node.op_type == "Softmax":
        if ctx.tflite_axis(node, len(shape), x.nhwc) != len(shape) - 1:
            raise ModelError(
                f"Softmax {node.name!r}: TFLite normalizes over the last axis only; this "
                f"one is over axis {attr(node, 'axis', -1)}"
            )
        code, builder = B.SOFTMAX, options("SoftmaxOptions", Beta=1.0)
    else:
        code, builder = B.LOGISTIC, None
    y = ctx.int8(node.output[0], shape, PROBABILITY_GRID)
    ctx.acts[node.output[0]] = Act(y, x.nhwc)
    ctx.emit(code, [x.index], [y], builder)
    # a QuantizeLinear after it (a QDQ model that quantizes probabilities) gets its grid
    for q in ctx.index.consumers.get(node.output[0], []):
        if q.op_type == "QuantizeLinear":
            z = ctx.requantized(ctx.acts[node.output[0]], ctx.grid(q), q.output[0])
            ctx.bind(q.output[0], Act(z, x.nhwc))
