"""What an importer of one TFLite operator sees: the file's tensors and the ONNX graph so far.

Activations keep the TFLite model's own layout (NHWC): an importer whose ONNX op wants NCHW (Conv,
pools, Resize) wraps it in Transposes (``to_nchw`` / ``from_nchw``); ONNX Runtime's transpose
optimizer cancels the adjacent pairs that chains of such ops leave.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import tflite
from onnx import helper, numpy_helper

from quanta.errors import ModelError

__all__ = ["ImportContext", "Op", "Tensor", "NUMPY_TYPES"]

_T = tflite.TensorType
NUMPY_TYPES: dict[int, np.dtype] = {
    _T.FLOAT32: np.dtype(np.float32), _T.FLOAT16: np.dtype(np.float16),
    _T.INT32: np.dtype(np.int32), _T.UINT8: np.dtype(np.uint8), _T.INT64: np.dtype(np.int64),
    _T.BOOL: np.dtype(np.bool_), _T.INT16: np.dtype(np.int16), _T.INT8: np.dtype(np.int8),
    _T.FLOAT64: np.dtype(np.float64),
}  # fmt: skip

_A = tflite.ActivationFunctionType


@dataclass
class Tensor:
    """One tensor of the TFLite subgraph; ``data`` is set for a constant."""

    index: int
    name: str
    shape: list[int]
    dtype: np.dtype
    data: np.ndarray | None = None
    signature: list[int] | None = None  # shape_signature: -1 marks a dynamic dimension
    scale: np.ndarray | None = None  # quantization scales (None or empty: not quantized)
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0


@dataclass
class Op:
    """One TFLite operator: ``inputs`` holds -1 for an omitted optional input."""

    index: int
    name: str  # the builtin operator's name, e.g. "CONV_2D"
    inputs: list[int]
    outputs: list[int]
    options: Any  # the parsed options table (e.g. tflite.Conv2DOptions), or None


@dataclass
class ImportContext:
    tensors: list[Tensor]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    # constants by tensor index: the file's buffers, and outputs folded at import (DEQUANTIZE)
    consts: dict[int, np.ndarray] = field(default_factory=dict)
    _names: dict[int, str] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)
    _emitted: set[int] = field(default_factory=set)
    # NOTE: set when an importer baked the file's example size of a dynamic dimension into the
    # graph (a Resize's sizes, a Reshape target with two -1s): the inputs then keep fixed shapes
    batch_fixed: bool = False

    def __post_init__(self) -> None:
        for t in self.tensors:
            name = t.name or f"tensor_{t.index}"
            while name in self._used:
                name = f"{name}_{t.index}"
            self._names[t.index] = name
            self._used.add(name)
            if t.data is not None:
                self.consts[t.index] = t.data

    # -- tensors -------------------------------------------------------------------------------

    def name(self, index: int) -> str:
        """The ONNX name of tensor ``index``; a constant becomes an initializer on first use."""
        if index in self.consts and index not in self._emitted:
            self._emitted.add(index)
            self.initializers.append(
                numpy_helper.from_array(self.consts[index], self._names[index])
            )
        return self._names[index]

    def const(self, index: int) -> np.ndarray | None:
        return None if index < 0 else self.consts.get(index)

    def weight(self, op: Op, position: int) -> np.ndarray:
        """Input ``position`` of ``op`` as a float32 constant, or a ModelError."""
        value = self.const(op.inputs[position]) if position < len(op.inputs) else None
        if value is None:
            raise ModelError(
                f"TFLite {op.name} (operator {op.index}): input {position} is not a constant; "
                "quanta imports only constant weights"
            )
        return value.astype(np.float32)

    def shape(self, index: int) -> list[int]:
        """Tensor ``index``'s static shape (a dynamic dimension holds the file's example size)."""
        return self.tensors[index].shape

    def dynamic(self, index: int) -> list[bool]:
        """Which dimensions of tensor ``index`` are dynamic (-1 in its ``shape_signature``)."""
        t = self.tensors[index]
        return [d == -1 for d in t.signature] if t.signature else [False] * len(t.shape)

    def baked_shape(self, index: int) -> list[int]:
        """``shape(index)`` for an importer that writes every dimension into the graph: a
        dynamic one there fixes the model's batch (``batch_fixed``)."""
        if any(self.dynamic(index)):
            self.batch_fixed = True
        return self.shape(index)

    def reshape_target(self, index: int) -> list[int]:
        """The new shape of a Reshape to tensor ``index``: its ``shape_signature`` when that
        has exactly one dynamic dimension (-1, which ONNX Reshape infers), else its shape."""
        t = self.tensors[index]
        if t.signature and t.signature.count(-1) == 1:
            return list(t.signature)
        return self.baked_shape(index)

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def constant(self, base: str, value: np.ndarray) -> str:
        """A new initializer holding ``value``; returns its name."""
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    # -- nodes ---------------------------------------------------------------------------------

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs: Any) -> str:
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=self.fresh(outputs[0]), **attrs)
        )
        return outputs[0]

    def to_nchw(self, x: str) -> str:
        return self.node("Transpose", [x], [self.fresh(f"{x}_nchw")], perm=[0, 3, 1, 2])

    def from_nchw(self, x: str, y: str) -> str:
        return self.node("Transpose", [x], [y], perm=[0, 2, 3, 1])

    def pre_activation(self, y: int, activation: int) -> str:
        """Where the main node writes: tensor ``y`` itself, or a fresh name when a fused
        activation (``activate``) follows."""
        return self.name(y) if activation == _A.NONE else self.fresh(f"{self.name(y)}_pre")

    def activate(self, x: str, y: int, activation: int, op: Op) -> None:
        """The fused activation of ``op`` from ``x`` (``pre_activation``) to tensor ``y``."""
        out = self.name(y)
        if activation == _A.NONE:
            return
        if activation == _A.RELU:
            self.node("Relu", [x], [out])
        elif activation in (_A.RELU6, _A.RELU_N1_TO_1):
            low, high = (0.0, 6.0) if activation == _A.RELU6 else (-1.0, 1.0)
            self.clip(x, out, low, high)
        elif activation == _A.TANH:
            self.node("Tanh", [x], [out])
        else:
            raise ModelError(
                f"TFLite {op.name} (operator {op.index}): fused activation {activation} "
                "(SIGN_BIT) has no ONNX import"
            )

    def clip(self, x: str, y: str, low: float, high: float) -> str:
        lo = self.constant(f"{y}_min", np.array(low, np.float32))
        hi = self.constant(f"{y}_max", np.array(high, np.float32))
        return self.node("Clip", [x, lo, hi], [y])
