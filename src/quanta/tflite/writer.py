"""A small in-memory TFLite model, serialized with the ``flatbuffers`` runtime and the ``tflite``
package's generated schema builders (no hand-written schema).

Only what quanta's exporter emits is modelled: one subgraph, tensors with optional constant data
and (per-tensor or per-axis) quantization, builtin operators with their options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
import tflite

__all__ = [
    "TFLiteModel",
    "TensorSpec",
    "OpSpec",
    "OptionsBuilder",
    "TENSOR_TYPES",
    "int_vector",
    "options",
]

TENSOR_TYPES = {
    np.dtype(np.float32): tflite.TensorType.FLOAT32,
    np.dtype(np.float16): tflite.TensorType.FLOAT16,
    np.dtype(np.int8): tflite.TensorType.INT8,
    np.dtype(np.uint8): tflite.TensorType.UINT8,
    np.dtype(np.int32): tflite.TensorType.INT32,
    np.dtype(np.int64): tflite.TensorType.INT64,
}


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: np.dtype
    data: np.ndarray | None = None  # constant contents
    scale: list[float] | None = None  # quantization (None: not quantized)
    zero_point: list[int] | None = None
    quantized_dimension: int = 0
    shape_signature: list[int] | None = None  # -1 for dynamic dimensions


# builds the operator's options table; returns (BuiltinOptions type, offset)
OptionsBuilder = Callable[[flatbuffers.Builder], tuple[int, int]]


def options(table: str, **fields: object) -> OptionsBuilder:
    """The builder of the options table ``table`` (e.g. ``"Pool2DOptions"``) with scalar
    ``fields`` (e.g. ``StrideW=2``), added in the order given: that order sets the bytes."""

    def build(b: flatbuffers.Builder) -> tuple[int, int]:
        getattr(tflite, f"{table}Start")(b)
        for name, value in fields.items():
            getattr(tflite, f"{table}Add{name}")(b, value)
        return getattr(tflite.BuiltinOptions, table), getattr(tflite, f"{table}End")(b)

    return build


@dataclass
class OpSpec:
    code: int  # tflite.BuiltinOperator
    inputs: list[int]
    outputs: list[int]
    options: OptionsBuilder | None = None
    version: int = 1


@dataclass
class TFLiteModel:
    tensors: list[TensorSpec] = field(default_factory=list)
    ops: list[OpSpec] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    description: str = "quanta"

    def add(self, tensor: TensorSpec) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def serialize(self) -> bytes:
        b = flatbuffers.Builder(1024)
        codes = sorted({(op.code, op.version) for op in self.ops})
        buffer_of, buffer_offsets = self._buffers(b)
        subgraph = self._subgraph(b, buffer_of, {c: i for i, c in enumerate(codes)})
        code_offsets = []
        for code, version in codes:
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, version)
            code_offsets.append(tflite.OperatorCodeEnd(b))
        codes_vec = _offsets(b, tflite.ModelStartOperatorCodesVector, code_offsets)
        subgraphs_vec = _offsets(b, tflite.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = _offsets(b, tflite.ModelStartBuffersVector, buffer_offsets)
        description = b.CreateString(self.description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, subgraphs_vec)
        tflite.ModelAddDescription(b, description)
        tflite.ModelAddBuffers(b, buffers_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def _buffers(self, b: flatbuffers.Builder) -> tuple[dict[int, int], list[int]]:
        """(tensor -> buffer index, buffer offsets): buffer 0 is the empty sentinel, then one
        per constant tensor."""
        buffer_of: dict[int, int] = {}
        payloads: list[bytes] = [b""]
        for i, t in enumerate(self.tensors):
            if t.data is not None:
                buffer_of[i] = len(payloads)
                payloads.append(np.ascontiguousarray(t.data).tobytes())
        buffer_offsets = []
        for data in payloads:
            vec = None
            if data:
                b.StartVector(1, len(data), 16)  # 16-byte alignment for the data
                b.head = b.head - len(data)
                b.Bytes[b.head : b.head + len(data)] = data
                vec = b.EndVector()
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            buffer_offsets.append(tflite.BufferEnd(b))
        return buffer_of, buffer_offsets

    def _subgraph(
        self,
        b: flatbuffers.Builder,
        buffer_of: dict[int, int],
        code_index: dict[tuple[int, int], int],
    ) -> int:
        tensor_offsets = [
            self._tensor(b, i, t, buffer_of.get(i, 0)) for i, t in enumerate(self.tensors)
        ]
        op_offsets = [self._op(b, op, code_index[(op.code, op.version)]) for op in self.ops]
        tensors_vec = _offsets(b, tflite.SubGraphStartTensorsVector, tensor_offsets)
        ops_vec = _offsets(b, tflite.SubGraphStartOperatorsVector, op_offsets)
        inputs_vec = int_vector(b, tflite.SubGraphStartInputsVector, self.inputs)
        outputs_vec = int_vector(b, tflite.SubGraphStartOutputsVector, self.outputs)
        name = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tensors_vec)
        tflite.SubGraphAddInputs(b, inputs_vec)
        tflite.SubGraphAddOutputs(b, outputs_vec)
        tflite.SubGraphAddOperators(b, ops_vec)
        tflite.SubGraphAddName(b, name)
        return int(tflite.SubGraphEnd(b))

    @staticmethod
    def _tensor(b: flatbuffers.Builder, index: int, t: TensorSpec, buffer: int) -> int:
        quant = None
        if t.scale is not None:
            scale = _floats(b, tflite.QuantizationParametersStartScaleVector, t.scale)
            zp = _int64s(b, tflite.QuantizationParametersStartZeroPointVector, t.zero_point or [0])
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            tflite.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
            quant = tflite.QuantizationParametersEnd(b)
        shape = int_vector(b, tflite.TensorStartShapeVector, t.shape)
        signature = (
            int_vector(b, tflite.TensorStartShapeSignatureVector, t.shape_signature)
            if t.shape_signature is not None
            else None
        )
        name = b.CreateString(t.name)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        if signature is not None:
            tflite.TensorAddShapeSignature(b, signature)
        tflite.TensorAddType(b, TENSOR_TYPES[np.dtype(t.dtype)])
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        return tflite.TensorEnd(b)

    @staticmethod
    def _op(b: flatbuffers.Builder, op: OpSpec, code_index: int) -> int:
        options = op.options(b) if op.options is not None else None
        inputs = int_vector(b, tflite.OperatorStartInputsVector, op.inputs)
        outputs = int_vector(b, tflite.OperatorStartOutputsVector, op.outputs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, code_index)
        tflite.OperatorAddInputs(b, inputs)
        tflite.OperatorAddOutputs(b, outputs)
        if options is not None:
            tflite.OperatorAddBuiltinOptionsType(b, options[0])
            tflite.OperatorAddBuiltinOptions(b, options[1])
        return tflite.OperatorEnd(b)


def _offsets(b: flatbuffers.Builder, start: Callable[..., Any], items: list[int]) -> int:
    start(b, len(items))
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return int(b.EndVector())


def int_vector(b: flatbuffers.Builder, start: Callable[..., Any], items: list[int]) -> int:
    start(b, len(items))
    for item in reversed(items):
        b.PrependInt32(int(item))
    return int(b.EndVector())


def _int64s(b: flatbuffers.Builder, start: Callable[..., Any], items: list[int]) -> int:
    start(b, len(items))
    for item in reversed(items):
        b.PrependInt64(int(item))
    return int(b.EndVector())


def _floats(b: flatbuffers.Builder, start: Callable[..., Any], items: list[float]) -> int:
    start(b, len(items))
    for item in reversed(items):
        b.PrependFloat32(float(item))
    return int(b.EndVector())
