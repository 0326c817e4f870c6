"""Give a quantized model a uint8 input: the raw pixels, as the classic TFLite interpreter took.

The model's float input ``x`` is ``u * scale`` for raw values ``u`` in 0..255 (images scaled to
[0, 1]: ``scale = 1/255``), so a ``DequantizeLinear(u, scale, 0)`` in front reproduces it and
the rest of the graph is unchanged. When the input's own quantization grid is that grid (range
[0, 1] → int8 scale 1/255, zero point -128), ``QuantizeLinear(DequantizeLinear(u))`` is exactly
``u - 128``: the uint8 model computes bit for bit what the float-input one does.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph.rewrite import Names

__all__ = ["with_uint8_input"]


def with_uint8_input(model: onnx.ModelProto, *, scale: float = 1.0 / 255.0) -> onnx.ModelProto:
    """A copy of ``model`` whose one float input takes uint8 values ``u`` meaning ``u * scale``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError("a uint8 input needs a model with exactly one float32 input")
    value = inputs[0]
    names = Names(out)
    float_name = names.fresh(f"{value.name}_float")
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == value.name:
                node.input[k] = float_name
    s_name, z_name = names.fresh(f"{value.name}_s"), names.fresh(f"{value.name}_zp")
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(scale, np.float32), s_name),
            numpy_helper.from_array(np.array(0, np.uint8), z_name),
        ]
    )
    dq = helper.make_node(
        "DequantizeLinear", [value.name, s_name, z_name], [float_name],
        name=names.fresh(f"{value.name}_DQ"),
    )  # fmt: skip
    nodes = [dq, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    value.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    onnx.checker.check_model(out)
    return out
