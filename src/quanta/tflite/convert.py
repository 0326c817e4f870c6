"""quanta's quantized ONNX (QDQ) -> a full-integer TFLite model, following TFLite's int8 spec.

- Layout: ONNX is NCHW, TFLite NHWC. 4-D activations are carried in NHWC; convolution weights
  are transposed once (OIHW -> OHWI; depthwise -> 1HW(C*M)); a Flatten/Reshape of an NHWC
  tensor feeding a fully connected layer is folded into that layer's weights (its input columns
  reordered from (C, H, W) to (H, W, C)), anywhere else a TRANSPOSE back to NCHW is inserted.
- Quantization: activations int8 asymmetric (a uint8 grid ``(s, z)`` becomes ``(s, z - 128)``,
  the same real values); weights int8 symmetric per output channel (zero point 0); biases int32
  with scale ``s_in * s_w``; pooling and reshapes keep their input's grid (TFLite's int8
  kernels do not rescale: a pool or reshape whose output has its own grid, an AveragePool or a
  QDQ model's Reshape, is followed by a QUANTIZE onto it); CONCATENATION's inputs are
  requantized onto its output's grid where they differ (TFLite's int8 kernel needs one grid);
  SOFTMAX and LOGISTIC (Sigmoid; quanta keeps both float in ONNX) run on int8 with TFLite's
  fixed output grid ``(1/256, -128)``, their input's grid measured like a float output's.
- Layers the model keeps float (Conv, Add, Relu, Clip(0, 6)) are written float: DEQUANTIZE of
  their int8 input, the float op (ReLU/ReLU6 fused), QUANTIZE back; their int8-stored weights
  stay int8 behind a DEQUANTIZE of a constant, which TFLite evaluates once at load.
- Edges: a float input gets a QUANTIZE, a uint8 input (``--input-uint8`` models) a QUANTIZE to
  int8; each output a DEQUANTIZE. A float output written by an integer op (quanta's float
  logits) needs an int8 grid in TFLite: it is taken from ``output_ranges`` (measured on
  calibration data by the caller).

Anything outside this set is a clear error naming the op. The per-op writing lives in
``quanta.tflite.ops`` (one file per op family, registries ``HANDLERS`` and ``FLOAT_HANDLERS``);
this module walks the graph and writes the model's inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import tflite

from quanta.errors import ModelError
from quanta.tflite.context import PROBABILITY_OPS, Act, Context
from quanta.tflite.ops import ABSORBED, FLOAT_HANDLERS, HANDLERS, quantize_float
from quanta.tflite.ops.layout import input_layout, to_nchw
from quanta.tflite.writer import TensorSpec, TFLiteModel

__all__ = ["SUPPORTED_OPS", "onnx_to_tflite"]

# the op types written on int8, in the order errors list them
SUPPORTED_OPS = tuple(HANDLERS)

B = tflite.BuiltinOperator


def onnx_to_tflite(
    model: onnx.ModelProto,
    output_ranges: Mapping[str, tuple[float, float]] | None = None,
    *,
    input_uint8: bool = False,
) -> bytes:
    """The TFLite flatbuffer of a quanta static (QDQ) model; see the module doc.

    ``input_uint8``: each float input becomes uint8 on its int8 grid shifted by 128, ``(s, z +
    128)``, as TensorFlow's converter writes ``inference_input_type=tf.uint8``: the same real
    values, and its QUANTIZE to int8 subtracts 128 exactly.
    """
    out = convert(model, output_ranges or {})
    if input_uint8:
        _uint8_inputs(out)
    return out.serialize()


def _uint8_inputs(out: TFLiteModel) -> None:
    """Retype each float32 input, read only by QUANTIZE to int8, as uint8 ``(s, z + 128)``."""
    for index in out.inputs:
        t = out.tensors[index]
        if t.dtype != np.float32:
            continue
        readers = [op for op in out.ops if index in op.inputs]
        grids = {
            (out.tensors[op.outputs[0]].scale[0], out.tensors[op.outputs[0]].zero_point[0])  # type: ignore[index]
            for op in readers
            if op.code == B.QUANTIZE and out.tensors[op.outputs[0]].dtype == np.int8
        }
        if len(grids) != 1 or any(op.code != B.QUANTIZE for op in readers):
            raise ModelError(
                f"--input-uint8: input {t.name!r} is read by a layer kept float, not only by its "
                "QUANTIZE to int8; write a float input (without --input-uint8)"
            )
        scale, zero_point = grids.pop()
        out.tensors[index] = TensorSpec(
            t.name, t.shape, np.dtype(np.uint8), scale=[scale], zero_point=[zero_point + 128]
        )


def convert(
    model: onnx.ModelProto, output_ranges: Mapping[str, tuple[float, float]]
) -> TFLiteModel:
    """The in-memory TFLite model: inputs, then each node in graph order, then outputs."""
    ctx = Context(model, output_ranges, SUPPORTED_OPS)
    graph = ctx.plain.graph
    for value in graph.input:
        if value.name not in ctx.consts:
            _write_input(ctx, value)
    for node in graph.node:
        if node.name in ctx.constant_nodes or node.name in ctx.fused_away:
            continue
        if node.op_type == "QuantizeLinear":
            quantize_float(ctx, node)
        elif node.op_type not in ABSORBED:
            _write_node(ctx, node)
    for value in graph.output:
        _write_output(ctx, value.name)
    return ctx.out


def _runs_int8(ctx: Context, node: onnx.NodeProto) -> bool:
    """Whether ``node`` computes on int8 here (else it is a layer kept float)."""
    entry = HANDLERS.get(node.op_type)
    if entry is not None and entry.weighted:
        weight = ctx.index.producer.get(node.input[1])
        return (
            node.input[0] in ctx.acts
            and weight is not None
            and (weight.op_type == "DequantizeLinear" and weight.input[0] in ctx.consts)
            and _int8_output(ctx, node)
        )
    if node.op_type in _FLOAT_WITH_CONSTANT and any(
        _float_constant(ctx, n) for n in node.input if n
    ):
        return False  # ONNX computes it in float: an int8 operand is a DequantizeLinear's
    data = [n for n in node.input if n and n not in ctx.consts and not ctx.int8_constant(n)]
    # an op without an int8 handler: judged by its first two data inputs, for the error below
    count = entry.data_inputs if entry is not None else 2
    return all(n in ctx.acts for n in (data if count is None else data[:count]))


def _int8_output(ctx: Context, node: onnx.NodeProto) -> bool:
    """Whether TFLite holds ``node``'s output in int8. Not where only float layers read it
    (float logits read by a float bias Add): the layer is then written float on its
    dequantized input and weight, which is what the ONNX graph computes."""
    return not _only_float_reads(ctx, node.output[0])


# Elementwise ops that compute in float in the ONNX model when one operand is a float constant
# (quanta keeps them float beside their float neighbour): no int8 form reads such an operand.
_FLOAT_WITH_CONSTANT = frozenset({"Add", "Mul", "Sub", "Div", "Concat"})


def _float_constant(ctx: Context, name: str) -> bool:
    """A floating-point constant that no DequantizeLinear writes (not an int8 value's grid)."""
    if name not in ctx.consts or not np.issubdtype(np.asarray(ctx.consts[name]).dtype, np.floating):
        return False
    producer = ctx.index.producer.get(name)
    return producer is None or producer.op_type != "DequantizeLinear"


def _float_only_readers(ctx: Context, node: onnx.NodeProto) -> bool:
    """Whether an unweighted node's output is read, and only by float layers."""
    return not HANDLERS[node.op_type].weighted and _only_float_reads(ctx, node.output[0])


def _only_float_reads(ctx: Context, out: str) -> bool:
    """Whether ``out`` is read, and only by float layers: no QuantizeLinear after it, not a
    graph output, not a Softmax/Sigmoid input that TFLite holds in int8."""
    users = ctx.index.consumers.get(out, [])
    return (
        bool(users)
        and out not in ctx.index.graph_outputs
        and all(u.op_type not in ("QuantizeLinear", *PROBABILITY_OPS) for u in users)
    )


def _write_node(ctx: Context, node: onnx.NodeProto) -> None:
    # written float between int8 tensors: an op with no int8 TFLite form (PRelu), and an
    # unweighted op whose output only float layers read (an Add before a PRelu)
    no_int8 = node.op_type in FLOAT_HANDLERS and (
        node.op_type not in HANDLERS or _float_only_readers(ctx, node)
    )
    if no_int8 or not _runs_int8(ctx, node):
        float_handler = FLOAT_HANDLERS.get(node.op_type)
        if float_handler is None:
            raise ModelError(
                f"node {node.name!r} ({node.op_type}) computes in float in this model; "
                f"quanta's TFLite export writes float layers only for "
                f"{', '.join(FLOAT_HANDLERS)}"
            )
        float_handler(ctx, node)
        return
    entry = HANDLERS.get(node.op_type)
    if entry is None:
        raise ModelError(
            f"node {node.name!r} is {node.op_type}, which quanta's TFLite export does not "
            f"support; supported: {', '.join(SUPPORTED_OPS)}"
        )
    entry.write(ctx, node)


def _write_input(ctx: Context, value: onnx.ValueInfoProto) -> None:
    """A float input gets a QUANTIZE to int8 (and stays readable float for a first layer kept
    float); a uint8 input (``--input-uint8``) a QUANTIZE from uint8 to int8."""
    users = ctx.index.consumers.get(value.name, [])
    elem = value.type.tensor_type.elem_type
    shape, nhwc = input_layout(ctx, value)
    if elem == onnx.TensorProto.FLOAT:
        q = next((u for u in users if u.op_type == "QuantizeLinear"), None)
        x = ctx.add(TensorSpec(value.name, shape, np.dtype(np.float32)))
        ctx.out.inputs.append(x)
        ctx.floats[value.name] = Act(x, nhwc)  # for a first layer kept float
        if q is None:
            return
        y = ctx.int8(q.output[0], shape, ctx.grid(q))
    elif elem == onnx.TensorProto.UINT8:
        dq = next((u for u in users if u.op_type == "DequantizeLinear"), None)
        if dq is None:
            raise ModelError(f"uint8 input {value.name!r} has no DequantizeLinear")
        scale = float(ctx.consts[dq.input[1]])
        zp = int(ctx.consts[dq.input[2]]) if len(dq.input) > 2 else 0
        x = ctx.add(
            TensorSpec(value.name, shape, np.dtype(np.uint8), scale=[scale], zero_point=[zp])
        )
        ctx.out.inputs.append(x)
        # the DequantizeLinear -> QuantizeLinear pair that follows is the requantization
        q = next(
            u for u in ctx.index.consumers.get(dq.output[0], []) if u.op_type == "QuantizeLinear"
        )
        y = ctx.int8(q.output[0], shape, ctx.grid(q))
    else:
        raise ModelError(f"input {value.name!r} has element type {elem}; expected float or uint8")
    ctx.emit(B.QUANTIZE, [x], [y], None, 2)
    ctx.bind(q.output[0], Act(y, nhwc))


def _write_output(ctx: Context, name: str) -> None:
    """A DEQUANTIZE to the float output, after a TRANSPOSE back to NCHW for an NHWC tensor; a
    float layer's output (a Softmax kept float) is the output itself."""
    if name not in ctx.acts and name in ctx.floats:
        act = ctx.floats[name]
        if act.nhwc and len(ctx.shape_of(act)) == 4:
            raise ModelError(f"output {name!r}: a float NHWC output has no NCHW form here")
        ctx.out.outputs.append(act.index)
        return
    act = ctx.act_of(name)
    source = to_nchw(ctx, act, name) if act.nhwc else act.index
    shape = ctx.out.tensors[source].shape
    y = ctx.add(TensorSpec(name, list(shape), np.dtype(np.float32)))
    ctx.emit(B.DEQUANTIZE, [source], [y], None, 2)
    ctx.out.outputs.append(y)
