"""GlobalAveragePool as MEAN over H and W (NHWC axes 1, 2), keeping the dims."""

from __future__ import annotations

import numpy as np
import onnx
import tflite

from quanta.tflite.context import Context
from quanta.tflite.writer import options

B = tflite.BuiltinOperator


def global_average_pool(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.act_of(node.input[0])
    n, _, _, c = ctx.shape_of(x)
    axes = ctx.constant(f"{node.name}_axes", np.array([1, 2], np.int32))
    y = ctx.output_act(node, [n, 1, 1, c], True)
    ctx.emit(B.MEAN, [x.index, axes], [y], options("ReducerOptions", KeepDims=True), 2)
