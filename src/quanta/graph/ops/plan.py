"""What an op handler decides for one node: which of its tensors become int8, and how."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import onnx

from quanta.graph.index import GraphIndex

__all__ = ["OpPlan", "Handler", "get_attr"]


@dataclass(frozen=True)
class OpPlan:
    """The quantization plan of one node.

    Attributes:
        activations: indices of float inputs to quantize per tensor (asymmetric, calibrated).
        weights: ``(input index, channel axis)`` of constant weights, quantized symmetric int8;
            the axis is used when per-channel quantization is on.
        bias: index of a constant bias input, quantized int32 with scale ``s_in * s_w``.
        output: ``"own"`` (calibrated range), ``"shared"`` (same scale and zero point as input 0,
            for ops that only move values: MaxPool, Reshape, ...) or None (stays float).
        fuse_relu: absorb a following Relu or Clip (ReLU6): quantize the op's output with the
            activation's range, whose saturation clamps exactly as the activation did (a Relu's
            range starts at 0, so the zero point sits at qmin and negatives map to 0).
        requires_quantized_input: run in int8 only when input 0 is already quantized
            (a lone MaxPool between float ops gains nothing from int8).
    """

    activations: tuple[int, ...] = ()
    weights: tuple[tuple[int, int], ...] = ()
    bias: int | None = None
    output: Literal["own", "shared"] | None = "own"
    fuse_relu: bool = False
    requires_quantized_input: bool = False


# A handler returns a plan, or a string saying why the node stays float.
Handler = Callable[[onnx.NodeProto, GraphIndex], "OpPlan | str"]


def get_attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def fusable_activation(node: onnx.NodeProto, index: GraphIndex) -> onnx.NodeProto | None:
    """The Relu or Clip that is the node's only consumer, if int8 saturation can replace it.

    A Clip qualifies when its bounds are constants with ``min <= 0 <= max``: calibrated on the
    Clip's output, the quantized range lies inside ``[min, max]`` and contains 0, so saturating
    to it clamps as the Clip did.
    """
    user = index.sole_consumer(node.output[0])
    if user is None:
        return None
    if user.op_type == "Relu":
        return user
    if user.op_type != "Clip":
        return None
    bounds = []
    for k, default in ((1, -float("inf")), (2, float("inf"))):
        if len(user.input) > k and user.input[k]:
            if not index.is_constant(user.input[k]):
                return None
            bounds.append(float(index.constant(user.input[k]).reshape(-1)[0]))
        else:
            bounds.append(default)
    return user if bounds[0] <= 0.0 <= bounds[1] else None


def relu_follows(node: onnx.NodeProto, index: GraphIndex) -> bool:
    """Whether a Relu/Clip that int8 saturation can replace follows the node."""
    return fusable_activation(node, index) is not None
