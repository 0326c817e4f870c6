"""float16 quantization: weights stored as float16, computed in float32.

As TFLite's float16 post-training quantization does on CPUs: each float32 initializer of more
than a few elements is stored as float16 and cast back to float32 by a ``Cast`` node, which ONNX
Runtime folds into a constant when the session starts. The file is ~2x smaller; the arithmetic,
and so the speed, is float32's (x86 CPUs have no fast float16 kernels in ONNX Runtime).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.graph.config import QuantizeConfig
from quanta.graph.prepare import prepare
from quanta.graph.result import QuantizeResult
from quanta.graph.rewrite import Names, remove_unused

__all__ = ["quantize_fp16"]

# NOTE: small tensors (shapes, scalars) gain nothing from float16 and may be read as constants
# by shape logic; only tensors of at least this many elements are converted.
MIN_ELEMENTS = 16


def quantize_fp16(model: onnx.ModelProto, config: QuantizeConfig | None = None) -> QuantizeResult:
    model = prepare(model)
    names = Names(model)
    graph = model.graph
    casts: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    renames: dict[str, str] = {}
    fp16_max = float(np.finfo(np.float16).max)
    clipped = 0
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        if value.size < MIN_ELEMENTS:
            continue
        clipped += int((np.abs(value) > fp16_max).sum())
        half = np.clip(value, -fp16_max, fp16_max).astype(np.float16)
        h_name = names.fresh(f"{init.name}_fp16")
        f_name = names.fresh(f"{init.name}_fp32")
        new_inits.append(numpy_helper.from_array(half, h_name))
        casts.append(
            helper.make_node(
                "Cast",
                [h_name],
                [f_name],
                to=onnx.TensorProto.FLOAT,
                name=names.fresh(f"{init.name}_Cast"),
            )
        )
        renames[init.name] = f_name
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renames:
                node.input[k] = renames[name]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    graph.initializer.extend(new_inits)
    del graph.value_info[:]
    remove_unused(model)
    onnx.checker.check_model(model)
    notes = [f"{len(casts)} weight tensors stored as float16, computed in float32"]
    if clipped:
        notes.append(f"{clipped} weight values beyond the float16 range were clipped to ±65504")
    return QuantizeResult(model, [], notes)
