"""Fold BatchNormalization into the Conv before it (inference form).

``y = gamma (conv(x) - mean) / sqrt(var + eps) + beta`` is a conv with weight
``W * gamma / sqrt(var + eps)`` (per output channel) and bias ``(b - mean) * factor + beta``.
Folding before quantization means the int8 weights are the ones that are really applied,
and the int8 conv needs no float op after it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import get_attr
from quanta.graph.rewrite import Names

__all__ = ["fold_batchnorm"]


def fold_batchnorm(model: onnx.ModelProto) -> int:
    """Fold every foldable Conv -> BatchNormalization pair in place; return how many."""
    index = GraphIndex(model)
    names = Names(model)
    graph = model.graph
    removed: set[int] = set()  # positions of folded BatchNormalization nodes (names may be empty)
    new_inits: list[onnx.TensorProto] = []
    for position, bn in enumerate(graph.node):
        if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
            continue
        conv = index.producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv":
            continue
        if id(index.sole_consumer(conv.output[0])) != id(bn):  # (id: keeps bn typed for mypy)
            continue
        if not all(index.is_constant(n) for n in bn.input[1:5]) or not index.is_constant(
            conv.input[1]
        ):
            continue
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        if has_bias and not index.is_constant(conv.input[2]):
            continue
        gamma, beta, mean, var = (index.constant(n).astype(np.float64) for n in bn.input[1:5])
        eps = float(get_attr(bn, "epsilon", 1e-5))
        w = index.constant(conv.input[1]).astype(np.float64)
        b = index.constant(conv.input[2]).astype(np.float64) if has_bias else np.zeros(w.shape[0])
        factor = gamma / np.sqrt(var + eps)  # (C_out,)
        w_name = names.fresh(f"{conv.input[1]}_bnfolded")
        b_name = names.fresh(f"{conv.name}_bias_bnfolded")
        new_inits.append(
            numpy_helper.from_array(
                (w * factor.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32), w_name
            )
        )
        new_inits.append(
            numpy_helper.from_array(((b - mean) * factor + beta).astype(np.float32), b_name)
        )
        conv.input[1] = w_name
        if has_bias:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = bn.output[0]
        removed.add(position)
    if removed:
        kept = [n for j, n in enumerate(graph.node) if j not in removed]
        del graph.node[:]
        graph.node.extend(kept)
        graph.initializer.extend(new_inits)
    return len(removed)
