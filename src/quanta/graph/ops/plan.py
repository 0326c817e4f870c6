"""What an op handler decides for one node: which of its tensors become int8, and how."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

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
        fuse_relu: absorb a following Relu: quantize the op's output with the Relu's range
            (zero point at qmin), which clamps negatives exactly as the Relu did.
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


def get_attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def relu_follows(node: onnx.NodeProto, index: GraphIndex) -> bool:
    """Whether the node's only consumer is a Relu (so the pair can run as one int8 op)."""
    user = index.sole_consumer(node.output[0])
    return user is not None and user.op_type == "Relu"
