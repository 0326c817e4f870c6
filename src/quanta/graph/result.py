"""What a quantization pass returns: the model, and what stayed float and why."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

__all__ = ["FloatNode", "QuantizeResult"]


@dataclass(frozen=True)
class FloatNode:
    """A node left in float, with the reason (shown to the user as a warning)."""

    name: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"node {self.name!r} ({self.op_type}) stays float: {self.reason}"


@dataclass
class QuantizeResult:
    model: onnx.ModelProto
    float_nodes: list[FloatNode] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
