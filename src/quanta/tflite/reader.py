"""Float ``.tflite`` -> ONNX, without TensorFlow: the file is read with the ``tflite`` schema
package and each operator is imported by one handler of ``quanta.tflite.read_ops.IMPORTERS``.

The ONNX model keeps the TFLite model's tensor names, shapes and layout (NHWC inputs and outputs);
only the ops that ONNX defines on NCHW (Conv, pools, Resize) are wrapped in Transposes, and
the pairs that undo each other between two such ops are cancelled (``read_layout``).

A dynamic batch (``shape_signature`` -1 on axis 0, as TensorFlow's converter writes a Keras
model) stays free in the ONNX model (dimension "N") unless an importer had to bake its size in.
Operators that feed only what the import does not read (the SHAPE -> STRIDED_SLICE -> PACK
that computes a RESHAPE's new shape at run time) are left out.
"""

from __future__ import annotations

import numpy as np
import onnx
import tflite
from onnx import helper

from quanta.errors import ModelError
from quanta.tflite.read_context import NUMPY_TYPES, ImportContext, Op, Tensor
from quanta.tflite.read_layout import Constants, cancel_transposes
from quanta.tflite.read_ops import IMPORTERS

__all__ = ["tflite_to_onnx", "is_tflite_bytes", "OPSET"]

# NOTE: 17 has HardSwish (14) and keeps ReduceMean's axes an attribute (an input from 18 on)
OPSET = 17

_OPTION_CLASSES = {
    v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_") and k != "NONE"
}
_QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


def is_tflite_bytes(data: bytes) -> bool:
    """Whether ``data`` begins like a TFLite flatbuffer (file identifier "TFL3" at bytes 4..8)."""
    return len(data) >= 8 and data[4:8] == b"TFL3"


def tflite_to_onnx(data: bytes) -> onnx.ModelProto:
    """Import a float TFLite model (the bytes of a ``.tflite`` file) as a float ONNX model.

    The ONNX model (opset 17) has the TFLite model's inputs and outputs, with their names,
    shapes and NHWC layout; float16 weights behind DEQUANTIZE become float32 initializers.

    Raises:
        ModelError: the bytes are not a TFLite model, the model is already quantized (int8 or
            uint8 tensors with quantization parameters), or an operator has no importer (the
            message names it and its index).

    Example:
        >>> model = tflite_to_onnx(Path("model.tflite").read_bytes())  # doctest: +SKIP
    """
    if not is_tflite_bytes(data):
        raise ModelError("not a TFLite model: expected the file identifier 'TFL3' at bytes 4..8")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
        tensors = [_tensor(model, graph, i, data) for i in range(graph.TensorsLength())]
        codes = [_code_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
        ops = [_op(graph.Operators(i), i, codes) for i in range(graph.OperatorsLength())]
        inputs = [int(i) for i in graph.InputsAsNumpy()]
        outputs = [int(i) for i in graph.OutputsAsNumpy()]
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises many error types
        raise ModelError(f"the TFLite file cannot be parsed: {exc}") from exc
    _refuse_quantized(tensors, ops)
    ctx = ImportContext(tensors)
    for op in _live(ops, outputs, ctx):
        importer = IMPORTERS.get(op.name)
        if importer is None:
            raise ModelError(
                f"TFLite operator {op.name} (operator {op.index}) has no ONNX import in quanta; "
                f"it imports {', '.join(sorted(IMPORTERS))}"
            )
        importer(ctx, op)
    out_names = [ctx.name(i) for i in outputs]
    nodes = cancel_transposes(ctx.nodes, set(out_names), Constants(ctx))
    free = _free_batch(ctx, [tensors[i] for i in (*inputs, *outputs)])
    graph_proto = helper.make_graph(
        nodes,
        "tflite_import",
        [_value_info(tensors[i], ctx.name(i), free) for i in inputs],
        [_value_info(tensors[i], ctx.name(i), free) for i in outputs],
        ctx.initializers,
    )
    onnx_model = helper.make_model(
        graph_proto,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="quanta.tflite.reader",
    )
    onnx_model.ir_version = 8  # NOTE: the newest IR that ONNX Runtime 1.1x reads at opset 17
    try:
        onnx.checker.check_model(onnx_model)
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"the ONNX model imported from TFLite fails the checker: {first}") from exc
    return onnx_model


def _read_inputs(op: Op, ctx: ImportContext) -> list[int]:
    """The inputs of ``op`` that its import reads: a RESHAPE's new shape only when constant
    (a computed one is replaced by the output's ``shape_signature``, ``reshape_target``)."""
    if op.name == "RESHAPE" and len(op.inputs) > 1 and ctx.const(op.inputs[1]) is None:
        return op.inputs[:1]
    return [i for i in op.inputs if i >= 0]


def _live(ops: list[Op], outputs: list[int], ctx: ImportContext) -> list[Op]:
    """The operators that the graph outputs depend on, in file order (a TFLite file lists its
    operators in execution order, so one backward pass finds them)."""
    needed, live = set(outputs), []
    for op in reversed(ops):
        if any(o in needed for o in op.outputs):
            live.append(op)
            needed.update(_read_inputs(op, ctx))
    return live[::-1]


def _free_batch(ctx: ImportContext, ends: list[Tensor]) -> bool:
    """Whether the inputs' and outputs' dynamic batch stays free: only axis 0 is dynamic there,
    and no importer wrote its example size into the graph."""
    dynamic = [ctx.dynamic(t.index) for t in ends]
    if ctx.batch_fixed or any(any(d[1:]) for d in dynamic):
        return False
    return any(d[:1] == [True] for d in dynamic)


def _code_name(code: tflite.OperatorCode) -> str:
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == tflite.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode() if custom else '?'}"
    return str(tflite.BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}"))


def _op(op: tflite.Operator, index: int, codes: list[str]) -> Op:
    options = None
    kind = op.BuiltinOptionsType()
    if kind and kind in _OPTION_CLASSES:
        table = op.BuiltinOptions()
        options = getattr(tflite, _OPTION_CLASSES[kind])()
        options.Init(table.Bytes, table.Pos)
    return Op(
        index=index,
        name=codes[op.OpcodeIndex()],
        inputs=[int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else [],
        outputs=[int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else [],
        options=options,
    )


def _tensor(model: tflite.Model, graph: tflite.SubGraph, index: int, data: bytes) -> Tensor:
    t = graph.Tensors(index)
    dtype = NUMPY_TYPES.get(t.Type())
    name = (t.Name() or b"").decode(errors="replace")
    if dtype is None:
        raise ModelError(f"TFLite tensor {name!r} has type {t.Type()}, which quanta cannot import")
    shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
    signature = [int(d) for d in t.ShapeSignatureAsNumpy()] if t.ShapeSignatureLength() else None
    tensor = Tensor(index, name, shape, dtype, signature=signature)
    if t.Sparsity() is not None:
        raise ModelError(
            f"TFLite tensor {name!r} is stored sparse, which quanta cannot import; expected "
            "dense weights (convert without sparsity)"
        )
    buffer = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
    raw: bytes | np.ndarray | None = None
    if buffer is not None and buffer.DataLength():
        raw = buffer.DataAsNumpy()
    elif buffer is not None and buffer.Offset() > 1:  # large models keep buffers after the tree
        raw = data[buffer.Offset() : buffer.Offset() + buffer.Size()]
    if raw is not None:
        tensor.data = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape).copy()
    q = t.Quantization()
    if q is not None and q.ScaleLength():
        tensor.scale = q.ScaleAsNumpy().astype(np.float32)
        zp = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(1, np.int64)
        tensor.zero_point = np.asarray(zp, np.int64)
        tensor.quantized_dimension = int(q.QuantizedDimension())
    return tensor


def _refuse_quantized(tensors: list[Tensor], ops: list[Op]) -> None:
    """An int8/uint8/int16 tensor with a scale, other than a constant that a DEQUANTIZE turns back
    into float, means integer kernels: quantizing again would compound the error."""
    dequantized = {op.inputs[0] for op in ops if op.name == "DEQUANTIZE" and op.inputs}
    for op in ops:
        for i in (*op.inputs, *op.outputs):
            if i < 0:
                continue
            t = tensors[i]
            if t.dtype not in _QUANTIZED or t.scale is None or not len(t.scale):
                continue
            if t.data is not None and i in dequantized:
                continue
            raise ModelError(
                f"the TFLite model is already quantized (tensor {t.name!r} of {op.name}, "
                f"operator {op.index}, is {t.dtype} with a quantization scale); pass the float "
                "model"
            )


def _value_info(t: Tensor, name: str, free_batch: bool) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(t.dtype)
    dims: list[int | str] = list(t.shape)
    if free_batch and t.signature and t.signature[0] == -1:
        dims[0] = "N"
    return helper.make_tensor_value_info(name, elem, dims)
