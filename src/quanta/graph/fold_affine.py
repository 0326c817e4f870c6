"""Fold a per-channel scale and shift written as Mul/Add/Sub/Div after a Conv into the Conv.

Some exporters write an inference BatchNormalization as ``Conv -> Mul(gamma') -> Add(beta')``
with constants of one value per output channel (captcha_crnn: 13 of its 24 convolutions). Left
as they are, the int8 Conv's output is rounded to int8 before the scale and again after it, and
the Mul and Add run in float between two int8 layers. ``y = conv(x) * m + a`` is a Conv with
weight ``W * m`` (per output channel) and bias ``b * m + a``, so they are folded, as
``quanta.graph.fold_bn`` folds BatchNormalization; ``/ d`` is ``* (1 / d)`` and ``- a`` is
``+ (-a)``.

A constant qualifies when it holds one value per output channel (or one for all) on the Conv
output's channel axis, broadcast to nothing larger: shape ``[C, 1, 1]``, ``[1, C, 1, 1]``,
``[1]``, a scalar, ... The Conv's weight and bias must be constants read by that Conv alone, and
its output read by the Mul/Add alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from quanta.graph.index import GraphIndex
from quanta.graph.rewrite import Names

__all__ = ["fold_channel_affine"]

_OPS = ("Mul", "Div", "Add", "Sub")


def _per_channel(value: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``value`` as one float per output channel (``channels``) of a rank-``rank`` Conv
    output, or None when it broadcasts otherwise."""
    if value.ndim > rank or not np.issubdtype(value.dtype, np.floating):
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if any(d != 1 for k, d in enumerate(shape) if k != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,)).copy()


def _fold_one(
    conv: onnx.NodeProto, index: GraphIndex
) -> tuple[onnx.NodeProto, str, np.ndarray] | None:
    """The node after ``conv`` that folds into it, its kind (``scale`` or ``shift``) and its
    per-channel value; None when there is none."""
    user = index.sole_consumer(conv.output[0])
    if user is None or user.op_type not in _OPS or len(user.input) != 2:
        return None
    ours = list(user.input).index(conv.output[0])
    other = user.input[1 - ours]
    if user.input[0] == user.input[1] or not index.is_constant(other):
        return None
    if user.op_type in ("Div", "Sub") and ours != 0:
        return None  # d / conv(x) and a - conv(x) are not affine in the Conv's weight
    weight = index.constant(conv.input[1])
    value = _per_channel(index.constant(other), weight.shape[0], weight.ndim)
    if value is None:
        return None
    if user.op_type == "Mul":
        return user, "scale", value
    if user.op_type == "Div":
        return (user, "scale", 1.0 / value) if np.all(value != 0) else None
    return user, "shift", value if user.op_type == "Add" else -value


def fold_channel_affine(model: onnx.ModelProto) -> int:
    """Fold every per-channel Mul/Div/Add/Sub of a constant after a Conv into it, in place
    (module docstring); return how many nodes were removed."""
    folded = 0
    while True:
        index = GraphIndex(model)
        names = Names(model)
        step = 0
        removed: set[int] = set()
        for conv in model.graph.node:
            if conv.op_type != "Conv" or not index.owns_initializer(conv, 1):
                continue
            if index.initializers[conv.input[1]].data_type != onnx.TensorProto.FLOAT:
                continue
            has_bias = len(conv.input) > 2 and bool(conv.input[2])
            if has_bias and not index.owns_initializer(conv, 2):
                continue
            found = _fold_one(conv, index)
            if found is None:
                continue
            user, kind, value = found
            constant = next(i for i in user.input if i != conv.output[0])
            if constant in index.initializers and len(index.consumers[constant]) == 1:
                model.graph.initializer.remove(index.initializers[constant])
            w = index.constant(conv.input[1]).astype(np.float64)
            b = index.constant(conv.input[2]).astype(np.float64) if has_bias else np.zeros(len(w))
            if kind == "scale":
                w = w * value.reshape(-1, *[1] * (w.ndim - 1))
                b = b * value
            else:
                b = b + value
            _replace(model, index, names, conv, 1, w)
            if has_bias:
                _replace(model, index, names, conv, 2, b)
            else:
                bias = names.fresh(f"{conv.name}_bias")
                model.graph.initializer.append(numpy_helper.from_array(b.astype(np.float32), bias))
                conv.input.append(bias)
            conv.output[0] = user.output[0]
            removed.add(id(user))
            step += 1
        if not step:
            return folded
        kept = [n for n in model.graph.node if id(n) not in removed]
        del model.graph.node[:]
        model.graph.node.extend(kept)
        folded += step


def _replace(
    model: onnx.ModelProto, index: GraphIndex, names: Names, node: onnx.NodeProto, k: int,
    value: np.ndarray,
) -> None:  # fmt: skip
    """Point ``node.input[k]`` (an initializer only it reads) at a new one holding ``value``."""
    old = index.initializers[node.input[k]]
    fresh = names.fresh(old.name)
    model.graph.initializer.remove(old)
    model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), fresh))
    node.input[k] = fresh
