"""quanta's quantized ONNX (QDQ) -> a full-integer TFLite model, following TFLite's int8 spec.

- Layout: ONNX is NCHW, TFLite NHWC. 4-D activations are carried in NHWC; convolution weights
  are transposed once (OIHW -> OHWI; depthwise -> 1HW(C*M)); a Flatten/Reshape of an NHWC
  tensor feeding a fully connected layer is folded into that layer's weights (its input columns
  reordered from (C, H, W) to (H, W, C)), anywhere else a TRANSPOSE back to NCHW is inserted.
- Quantization: activations int8 asymmetric (a uint8 grid ``(s, z)`` becomes ``(s, z - 128)``,
  the same real values); weights int8 symmetric per output channel (zero point 0); biases int32
  with scale ``s_in * s_w``; pooling and reshapes keep their input's grid; CONCATENATION's
  inputs are requantized onto its output's grid where they differ (TFLite's int8 kernel needs
  one grid); SOFTMAX and LOGISTIC (Sigmoid; quanta keeps both float in ONNX) run on int8 with
  TFLite's fixed output grid ``(1/256, -128)``, their input's grid measured like a float
  output's.
- Layers the model keeps float (Conv, Add, Relu, Clip(0, 6)) are written float: DEQUANTIZE of
  their int8 input, the float op (ReLU/ReLU6 fused), QUANTIZE back; their int8-stored weights
  stay int8 behind a DEQUANTIZE of a constant, which TFLite evaluates once at load.
- Edges: a float input gets a QUANTIZE, a uint8 input (``--input-uint8`` models) a QUANTIZE to
  int8; each output a DEQUANTIZE. A float output written by an integer op (quanta's float
  logits) needs an int8 grid in TFLite: it is taken from ``output_ranges`` (measured on
  calibration data by the caller).

Anything outside this set is a clear error naming the op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import tflite
from onnx import helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph.compact import expand_qdq
from quanta.graph.index import GraphIndex
from quanta.quant import choose_qparams
from quanta.tflite.writer import OpSpec, TensorSpec, TFLiteModel, int_vector

__all__ = ["SUPPORTED_OPS", "onnx_to_tflite"]

SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten",
    "Reshape", "Add", "Mul", "Concat", "Softmax", "Sigmoid",
)  # fmt: skip

B = tflite.BuiltinOperator


@dataclass
class _Act:
    """An int8 TFLite tensor standing for an ONNX integer tensor."""

    index: int
    nhwc: bool  # a 4-D ONNX NCHW tensor held as NHWC


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Converter:
    def __init__(
        self, model: onnx.ModelProto, output_ranges: Mapping[str, tuple[float, float]]
    ) -> None:
        self.plain = expand_qdq(model)
        self.index = GraphIndex(self.plain)
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.plain.graph.initializer}
        self.initial = dict(self.consts)  # the stored initializers, before constant folding
        self.out = TFLiteModel(description="quanta export-tflite")
        self.acts: dict[str, _Act] = {}
        self.output_ranges = output_ranges
        self.shapes = self._shapes()
        self.floats: dict[str, _Act] = {}  # float32 TFLite tensors standing for ONNX tensors
        self.fused_away: set[str] = set()  # Relu/Clip nodes folded into a float op
        self._fold_constants()

    def _fold_constants(self) -> None:
        """Evaluate constant subgraphs (an int8 weight decoded by Cast and Mul for a layer kept
        float) once: the TFLite file stores their float result."""
        from onnx.reference import ReferenceEvaluator

        opsets = {o.domain: o.version for o in self.plain.opset_import}
        self.constant_nodes: set[str] = set()
        for node in self.plain.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") or not node.input:
                continue
            if all(not n or n in self.consts for n in node.input):
                values = ReferenceEvaluator(node, opsets=opsets).run(
                    None, {n: self.consts[n] for n in node.input if n}
                )
                for name, value in zip(node.output, values, strict=False):
                    self.consts[name] = np.asarray(value)
                self.constant_nodes.add(node.name)

    def _shapes(self) -> dict[str, list[int | None]]:
        inferred = onnx.shape_inference.infer_shapes(self.plain)
        shapes: dict[str, list[int | None]] = {}
        for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            if v.type.tensor_type.HasField("shape"):
                shapes[v.name] = [
                    d.dim_value if d.HasField("dim_value") else None
                    for d in v.type.tensor_type.shape.dim
                ]
        return shapes

    # --- tensors -----------------------------------------------------------------------------

    def _grid(self, q_node: onnx.NodeProto) -> tuple[float, int]:
        """(scale, int8 zero point) of a QuantizeLinear/DequantizeLinear's per-tensor grid."""
        scale = self.consts[q_node.input[1]]
        zp = self.consts[q_node.input[2]] if len(q_node.input) > 2 else np.uint8(0)
        if scale.ndim != 0:
            raise ModelError(f"{q_node.name}: per-axis activation grids have no TFLite form")
        z = int(zp) - 128 if zp.dtype == np.uint8 else int(zp)
        return float(scale), z

    def _int8(self, name: str, shape: list[int], grid: tuple[float, int]) -> int:
        return self.out.add(TensorSpec(name, shape, np.dtype(np.int8), scale=[grid[0]],
                                       zero_point=[grid[1]]))  # fmt: skip

    def _bind(self, q_output: str, act: _Act) -> None:
        """``act`` stands for a QuantizeLinear's output and for each DequantizeLinear of it."""
        self.acts[q_output] = act
        for dq in self.index.consumers.get(q_output, []):
            if dq.op_type == "DequantizeLinear":
                self.acts[dq.output[0]] = act

    def _nhwc_shape(self, name: str, batch: int = 1) -> list[int]:
        dims = self.shapes.get(name)
        if dims is None:
            raise ModelError(f"the shape of tensor {name!r} is unknown; expected static shapes")
        full = [batch if d is None else d for d in dims]
        return [full[0], full[2], full[3], full[1]] if len(full) == 4 else full

    def _act_of(self, name: str) -> _Act:
        act = self.acts.get(name)
        if act is None:
            raise ModelError(
                f"tensor {name!r} is float in this model, written by an op quanta's TFLite "
                "export cannot write in float (it can for Conv, Add, Relu and Clip(0, 6))"
            )
        return act

    def _weight(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The int8 values and per-channel scales of a weight DequantizeLinear."""
        dq = self.index.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.consts:
            raise ModelError(f"weight {name!r} is not an int8 constant; export a static model")
        return self.consts[dq.input[0]], np.atleast_1d(self.consts[dq.input[1]])

    def _bias(self, name: str | None, channels: int, scale: np.ndarray) -> int:
        values = self._weight(name)[0].astype(np.int32) if name else np.zeros(channels, np.int32)
        return self.out.add(
            TensorSpec(
                f"{name or 'bias'}_i32", [channels], np.dtype(np.int32), data=values,
                scale=[float(s) for s in np.broadcast_to(scale, (channels,))],
                zero_point=[0] * channels,
            )
        )  # fmt: skip

    def _output_act(self, node: onnx.NodeProto, shape: list[int], nhwc: bool) -> int:
        """The int8 tensor a compute node writes: its QuantizeLinear's grid, or for a float
        graph output the grid measured by the caller (then a DEQUANTIZE follows)."""
        out_name = node.output[0]
        users = self.index.consumers.get(out_name, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            q = users[0]
            index = self._int8(q.output[0], shape, self._grid(q))
            self._bind(q.output[0], _Act(index, nhwc))
            return index
        into_softmax = bool(users) and all(u.op_type in ("Softmax", "Sigmoid") for u in users)
        if out_name in self.index.graph_outputs or into_softmax:
            if out_name not in self.output_ranges:
                what = (
                    "output"
                    if out_name in self.index.graph_outputs
                    else f"{users[0].op_type} input"
                )
                raise ModelError(
                    f"{what} {out_name!r} is float, written by {node.op_type} {node.name!r}; "
                    "TFLite needs its int8 range: pass --calibration to measure it"
                )
            lo, hi = self.output_ranges[out_name]
            qp = choose_qparams(lo, hi, "int8")
            index = self._int8(f"{out_name}_int8", shape, (float(qp.scale), int(qp.zero_point)))
            self.acts[out_name] = _Act(index, nhwc)
            return index
        readers = ", ".join(f"{u.name!r} ({u.op_type})" for u in users) or "nothing"
        raise ModelError(
            f"{node.op_type} {node.name!r} writes float for {readers}: those ops stay float in "
            f"this model, and quanta's TFLite export supports only int8 ops "
            f"({', '.join(SUPPORTED_OPS)})"
        )

    # --- ops -----------------------------------------------------------------------------------

    def _padding(self, node: onnx.NodeProto, x: _Act, kernel: list[int]) -> tuple[int, _Act]:
        """TFLite padding mode; explicit pads that are not VALID or SAME become a PAD op."""
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))  # type: ignore[call-overload]
        strides = list(_attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
        if not any(pads):
            return tflite.Padding.VALID, x
        shape = self.out.tensors[x.index].shape  # N, H, W, C
        same = True
        for axis, (size, k, s) in enumerate(zip(shape[1:3], kernel, strides, strict=True)):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            if [pads[axis], pads[axis + 2]] != [total // 2, total - total // 2]:
                same = False
        if same:
            return tflite.Padding.SAME, x
        t = self.out.tensors[x.index]
        padded_shape = [t.shape[0], t.shape[1] + pads[0] + pads[2], t.shape[2] + pads[1] + pads[3],
                        t.shape[3]]  # fmt: skip
        paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], np.int32)
        p_index = self.out.add(TensorSpec(f"{node.name}_paddings", [4, 2], np.dtype(np.int32),
                                          data=paddings))  # fmt: skip
        # same type and grid as the input: int8 pads with its zero point (real 0), float with 0
        y = self.out.add(TensorSpec(f"{node.name}_padded", padded_shape, t.dtype, scale=t.scale,
                                    zero_point=t.zero_point))  # fmt: skip
        self.out.ops.append(OpSpec(B.PAD, [x.index, p_index], [y], _pad_options))
        return tflite.Padding.VALID, _Act(y, True)

    def _conv_shape(self, node: onnx.NodeProto, w: np.ndarray) -> tuple[bool, int]:
        """(depthwise, depth multiplier) of a Conv with OIHW weights ``w``."""
        m, cg = w.shape[:2]
        group = int(_attr(node, "group", 1))  # type: ignore[call-overload]
        if group > 1 and cg != 1:
            raise ModelError(f"Conv {node.name!r}: grouped convolution has no TFLite builtin")
        return group > 1, m // group

    @staticmethod
    def _nhwc_weight(w: np.ndarray, depthwise: bool) -> np.ndarray:
        """OIHW -> OHWI (CONV_2D), or 1HW(C*M) (DEPTHWISE_CONV_2D)."""
        m, _, kh, kw = w.shape
        return (
            w.reshape(m, kh, kw).transpose(1, 2, 0)[None] if depthwise else w.transpose(0, 2, 3, 1)
        )

    def _append_conv(
        self, node: onnx.NodeProto, inputs: list[int], y: int, depthwise: bool, multiplier: int,
        padding: int, activation: int = tflite.ActivationFunctionType.NONE,
    ) -> None:  # fmt: skip
        sh, sw = list(_attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
        dh, dw = list(_attr(node, "dilations", [1, 1]))  # type: ignore[call-overload]
        name = "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions"

        def options(b: object) -> tuple[int, int]:
            add = lambda field, value: getattr(tflite, f"{name}Add{field}")(b, value)  # noqa: E731
            getattr(tflite, f"{name}Start")(b)
            add("Padding", padding)
            add("StrideW", sw)
            add("StrideH", sh)
            add("DilationWFactor", dw)
            add("DilationHFactor", dh)
            add("FusedActivationFunction", activation)
            if depthwise:
                add("DepthMultiplier", multiplier)
            return getattr(tflite.BuiltinOptions, name), getattr(tflite, f"{name}End")(b)

        code = B.DEPTHWISE_CONV_2D if depthwise else B.CONV_2D
        self.out.ops.append(OpSpec(code, inputs, [y], options, 3))

    def conv(self, node: onnx.NodeProto) -> None:
        x = self._act_of(node.input[0])
        w, w_scale = self._weight(node.input[1])
        m, _, kh, kw = w.shape
        depthwise, multiplier = self._conv_shape(node, w)
        padding, x = self._padding(node, x, [kh, kw])
        x_t = self.out.tensors[x.index]
        scale = np.float32(x_t.scale[0]) * w_scale.astype(np.float32)  # type: ignore[index]
        data = self._nhwc_weight(w, depthwise)
        w_index = self.out.add(TensorSpec(
            f"{node.input[1]}_tfl", list(data.shape), np.dtype(np.int8), data=data.astype(np.int8),
            scale=[float(s) for s in np.broadcast_to(w_scale, (m,))], zero_point=[0] * m,
            quantized_dimension=3 if depthwise else 0,
        ))  # fmt: skip
        b_index = self._bias(
            node.input[2] if len(node.input) > 2 and node.input[2] else None, m, scale
        )
        y = self._output_act(node, self._nhwc_shape(node.output[0]), True)
        self._append_conv(node, [x.index, w_index, b_index], y, depthwise, multiplier, padding)

    def fully_connected(self, node: onnx.NodeProto) -> None:
        x = self._act_of(node.input[0])
        w, w_scale = self._weight(node.input[1])
        if node.op_type == "Gemm":
            if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0:
                raise ModelError(f"Gemm {node.name!r}: transA/alpha have no TFLite form")
            if not _attr(node, "transB", 0):
                w = w.T
        else:
            w = w.T  # MatMul weight (K, N) -> (N, K)
        w = self._unflatten_columns(node.input[0], w)
        n = w.shape[0]
        x_t = self.out.tensors[self._act_of(node.input[0]).index]
        scale = np.float32(x_t.scale[0]) * w_scale.astype(np.float32)  # type: ignore[index]
        w_index = self.out.add(TensorSpec(
            f"{node.input[1]}_tfl", list(w.shape), np.dtype(np.int8), data=w.astype(np.int8),
            scale=[float(s) for s in np.broadcast_to(w_scale, (n,))], zero_point=[0] * n,
        ))  # fmt: skip
        bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 else None
        b_index = self._bias(bias or None, n, scale)
        batch = x_t.shape[0]
        y = self._output_act(node, [batch, n], False)

        def options(b: object) -> tuple[int, int]:
            tflite.FullyConnectedOptionsStart(b)
            return tflite.BuiltinOptions.FullyConnectedOptions, tflite.FullyConnectedOptionsEnd(b)

        self.out.ops.append(OpSpec(B.FULLY_CONNECTED, [x.index, w_index, b_index], [y], options, 5))

    def _unflatten_columns(self, flat: str, w: np.ndarray) -> np.ndarray:
        """Fold the NCHW->NHWC flatten order into the weights' input columns."""
        if flat not in self.folded:
            return w
        c, h, wd = self.folded[flat]
        return w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

    def flatten(self, node: onnx.NodeProto) -> None:
        x = self._act_of(node.input[0])
        t = self.out.tensors[x.index]
        users = self.index.consumers.get(node.output[0], [])
        q = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
        readers = self.index.consumers.get(q.output[0], []) if q is not None else []
        readers = [r for dq in readers for r in self.index.consumers.get(dq.output[0], [])]
        fold = x.nhwc and readers and all(r.op_type in ("Gemm", "MatMul") for r in readers)
        source = x.index
        if x.nhwc and not fold:
            nchw = [t.shape[0], t.shape[3], t.shape[1], t.shape[2]]
            source = self._int8(f"{node.name}_nchw", nchw, (t.scale[0], t.zero_point[0]))  # type: ignore[index]
            perm = self.out.add(TensorSpec(f"{node.name}_perm", [4], np.dtype(np.int32),
                                           data=np.array([0, 3, 1, 2], np.int32)))  # fmt: skip
            self.out.ops.append(OpSpec(B.TRANSPOSE, [x.index, perm], [source], _transpose_options))
        dims = self.shapes.get(node.output[0])
        batch = t.shape[0]
        features = int(np.prod(t.shape[1:]))
        shape = (
            [batch, features]
            if dims is None or len(dims) == 2
            else [batch if d is None else d for d in dims]
        )
        y = self._output_act(node, shape, False)
        if fold and q is not None:
            _, h, w, c = t.shape
            aliases = [node.output[0], q.output[0]]
            aliases += [d.output[0] for d in self.index.consumers.get(q.output[0], [])]
            for name in aliases:
                self.folded[name] = (c, h, w)
        new_shape = [-1, *shape[1:]]  # any batch
        shape_t = self.out.add(TensorSpec(f"{node.name}_shape", [len(shape)], np.dtype(np.int32),
                                          data=np.array(new_shape, np.int32)))  # fmt: skip

        def options(b: object) -> tuple[int, int]:
            vec = int_vector(b, tflite.ReshapeOptionsStartNewShapeVector, new_shape)
            tflite.ReshapeOptionsStart(b)
            tflite.ReshapeOptionsAddNewShape(b, vec)
            return tflite.BuiltinOptions.ReshapeOptions, tflite.ReshapeOptionsEnd(b)

        self.out.ops.append(OpSpec(B.RESHAPE, [source, shape_t], [y], options))

    def pool(self, node: onnx.NodeProto) -> None:
        x = self._act_of(node.input[0])
        t = self.out.tensors[x.index]
        if node.op_type == "GlobalAveragePool":
            axes = self.out.add(TensorSpec(f"{node.name}_axes", [2], np.dtype(np.int32),
                                           data=np.array([1, 2], np.int32)))  # fmt: skip
            y = self._output_act(node, [t.shape[0], 1, 1, t.shape[3]], True)

            def mean_options(b: object) -> tuple[int, int]:
                tflite.ReducerOptionsStart(b)
                tflite.ReducerOptionsAddKeepDims(b, True)
                return tflite.BuiltinOptions.ReducerOptions, tflite.ReducerOptionsEnd(b)

            self.out.ops.append(OpSpec(B.MEAN, [x.index, axes], [y], mean_options, 2))
            return
        kernel = list(_attr(node, "kernel_shape", []))  # type: ignore[call-overload]
        strides = list(_attr(node, "strides", [1, 1]))  # type: ignore[call-overload]
        if _attr(node, "ceil_mode", 0):
            raise ModelError(f"{node.op_type} {node.name!r}: ceil_mode has no TFLite form")
        padding, x = self._padding(node, x, kernel)
        y = self._output_act(node, self._nhwc_shape(node.output[0], t.shape[0]), True)
        kh, kw = kernel
        sh, sw = strides

        def options(b: object) -> tuple[int, int]:
            tflite.Pool2DOptionsStart(b)
            tflite.Pool2DOptionsAddPadding(b, padding)
            tflite.Pool2DOptionsAddStrideW(b, sw)
            tflite.Pool2DOptionsAddStrideH(b, sh)
            tflite.Pool2DOptionsAddFilterWidth(b, kw)
            tflite.Pool2DOptionsAddFilterHeight(b, kh)
            return tflite.BuiltinOptions.Pool2DOptions, tflite.Pool2DOptionsEnd(b)

        code = B.MAX_POOL_2D if node.op_type == "MaxPool" else B.AVERAGE_POOL_2D
        self.out.ops.append(OpSpec(code, [x.index], [y], options, 2))

    def elementwise(self, node: onnx.NodeProto) -> None:
        a, b_ = self._act_of(node.input[0]), self._act_of(node.input[1])
        if a.nhwc != b_.nhwc:
            raise ModelError(f"{node.op_type} {node.name!r}: inputs in different layouts")
        shape = self.out.tensors[a.index].shape
        y = self._output_act(node, list(shape), a.nhwc)
        if node.op_type == "Add":
            code, start, end, kind = (
                B.ADD,
                tflite.AddOptionsStart,
                tflite.AddOptionsEnd,
                tflite.BuiltinOptions.AddOptions,
            )
        else:
            code, start, end, kind = (
                B.MUL,
                tflite.MulOptionsStart,
                tflite.MulOptionsEnd,
                tflite.BuiltinOptions.MulOptions,
            )

        def options(b: object) -> tuple[int, int]:
            start(b)
            return kind, end(b)

        self.out.ops.append(OpSpec(code, [a.index, b_.index], [y], options, 2))

    def _requantized(self, act: _Act, grid: tuple[float, int], name: str) -> int:
        """``act`` on ``grid``: itself if it is already there, else a QUANTIZE (int8 -> int8)."""
        t = self.out.tensors[act.index]
        if (t.scale[0], t.zero_point[0]) == grid:  # type: ignore[index]
            return act.index
        y = self._int8(name, list(t.shape), grid)
        self.out.ops.append(OpSpec(B.QUANTIZE, [act.index], [y], None, 2))
        return y

    def _tflite_axis(self, node: onnx.NodeProto, rank: int, nhwc: bool) -> int:
        axis = int(_attr(node, "axis", -1 if node.op_type == "Softmax" else 0))  # type: ignore[call-overload]
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ModelError(f"{node.op_type} {node.name!r}: axis {axis} is outside rank {rank}")
        return [0, 3, 1, 2][axis] if nhwc else axis  # NCHW axis -> NHWC axis

    def concat(self, node: onnx.NodeProto) -> None:
        """CONCATENATION: TFLite's int8 kernel needs every input on the output's grid, so an
        input on another grid (quanta's QDQ Concat lets each keep its own) is requantized."""
        acts = [self._act_of(name) for name in node.input]
        if len({a.nhwc for a in acts}) != 1:
            raise ModelError(f"Concat {node.name!r}: inputs in different layouts")
        shapes = [list(self.out.tensors[a.index].shape) for a in acts]
        axis = self._tflite_axis(node, len(shapes[0]), acts[0].nhwc)
        shape = list(shapes[0])
        shape[axis] = sum(sh[axis] for sh in shapes)
        y = self._output_act(node, shape, acts[0].nhwc)
        out_t = self.out.tensors[y]
        grid = (out_t.scale[0], out_t.zero_point[0])  # type: ignore[index]
        inputs = [self._requantized(a, grid, f"{node.name}_in{i}") for i, a in enumerate(acts)]

        def options(b: object) -> tuple[int, int]:
            tflite.ConcatenationOptionsStart(b)
            tflite.ConcatenationOptionsAddAxis(b, axis)
            return tflite.BuiltinOptions.ConcatenationOptions, tflite.ConcatenationOptionsEnd(b)

        self.out.ops.append(OpSpec(B.CONCATENATION, inputs, [y], options))

    def probability(self, node: onnx.NodeProto) -> None:
        """SOFTMAX (over the last axis) or LOGISTIC on int8, with the output grid TFLite fixes
        for both: (1/256, -128). quanta keeps Softmax and Sigmoid float in ONNX; the int8 grid
        of their input comes from the op before (measured by ``--calibration``)."""
        x = self._act_of(node.input[0])
        shape = list(self.out.tensors[x.index].shape)
        options = None
        if node.op_type == "Softmax":
            if self._tflite_axis(node, len(shape), x.nhwc) != len(shape) - 1:
                raise ModelError(
                    f"Softmax {node.name!r}: TFLite normalizes over the last axis only; this "
                    f"one is over axis {_attr(node, 'axis', -1)}"
                )

            def options(b: object) -> tuple[int, int]:
                tflite.SoftmaxOptionsStart(b)
                tflite.SoftmaxOptionsAddBeta(b, 1.0)
                return tflite.BuiltinOptions.SoftmaxOptions, tflite.SoftmaxOptionsEnd(b)

        y = self._int8(node.output[0], shape, (1 / 256, -128))
        self.acts[node.output[0]] = _Act(y, x.nhwc)
        code = B.SOFTMAX if node.op_type == "Softmax" else B.LOGISTIC
        self.out.ops.append(OpSpec(code, [x.index], [y], options))
        # a QuantizeLinear after it (a QDQ model that quantizes probabilities) gets its grid
        for q in self.index.consumers.get(node.output[0], []):
            if q.op_type == "QuantizeLinear":
                z = self._requantized(self.acts[node.output[0]], self._grid(q), q.output[0])
                self._bind(q.output[0], _Act(z, x.nhwc))

    # --- layers kept float: DEQUANTIZE -> float op -> QUANTIZE ------------------------------

    def _float_of(self, name: str) -> _Act:
        """The float32 TFLite tensor of an ONNX tensor (an int8 one gets a DEQUANTIZE)."""
        if name in self.floats:
            return self.floats[name]
        act = self._act_of(name)
        t = self.out.tensors[act.index]
        y = self.out.add(TensorSpec(f"{name}_float", list(t.shape), np.dtype(np.float32)))
        self.out.ops.append(OpSpec(B.DEQUANTIZE, [act.index], [y], None, 2))
        self.floats[name] = _Act(y, act.nhwc)
        return self.floats[name]

    def _float_out(self, node: onnx.NodeProto, shape: list[int], nhwc: bool) -> tuple[int, int]:
        """A float32 output for ``node``, with a ReLU/ReLU6 reader fused; returns (tensor,
        fused activation)."""
        out = node.output[0]
        activation = tflite.ActivationFunctionType.NONE
        users = self.index.consumers.get(out, [])
        if len(users) == 1 and out not in self.index.graph_outputs:
            user = users[0]
            low = self.consts.get(user.input[1]) if len(user.input) > 1 else None
            high = self.consts.get(user.input[2]) if len(user.input) > 2 else None
            if user.op_type == "Relu":
                activation = tflite.ActivationFunctionType.RELU
            elif (
                user.op_type == "Clip"
                and low is not None
                and high is not None
                and (float(low), float(high)) == (0.0, 6.0)
            ):
                activation = tflite.ActivationFunctionType.RELU6
            if activation != tflite.ActivationFunctionType.NONE:
                self.fused_away.add(user.name)
                out = user.output[0]
        y = self.out.add(TensorSpec(out, shape, np.dtype(np.float32)))
        self.floats[out] = _Act(y, nhwc)
        return y, activation

    def _int8_storage(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(int8 values, per-output-channel scales) of a weight quanta stored as
        ``Mul(Cast(q), scale)`` (``quanta.graph.rewrite.weight_only_decoder``), else None."""
        mul = self.index.producer.get(name)
        if mul is None or mul.op_type != "Mul":
            return None
        cast = self.index.producer.get(mul.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in self.initial:
            return None
        q, scale = self.initial[cast.input[0]], self.initial.get(mul.input[1])
        if q.dtype != np.int8 or scale is None or scale.size not in (1, q.shape[0]):
            return None
        return q, np.broadcast_to(scale.reshape(-1), (q.shape[0],))

    def _float_constant(self, name: str, data: np.ndarray) -> int:
        return self.out.add(TensorSpec(name, list(data.shape), np.dtype(np.float32),
                                       data=data.astype(np.float32)))  # fmt: skip

    def float_conv(self, node: onnx.NodeProto) -> None:
        x = self._float_of(node.input[0])
        w = self.consts.get(node.input[1])
        if w is None:
            raise ModelError(f"Conv {node.name!r}: its weight is not a constant")
        m, _, kh, kw = w.shape
        depthwise, multiplier = self._conv_shape(node, w)
        padding, x = self._padding(node, x, [kh, kw])
        stored = self._int8_storage(node.input[1])
        if stored is None:
            w_index = self._float_constant(f"{node.input[1]}_tfl", self._nhwc_weight(w, depthwise))
        else:
            # quanta stores a float layer's weights in int8 (Cast * scale); TFLite does the same
            # with a DEQUANTIZE of a constant, which it evaluates once when the model loads
            q, scale = stored
            data = self._nhwc_weight(q, depthwise)
            q_index = self.out.add(TensorSpec(
                f"{node.input[1]}_int8", list(data.shape), np.dtype(np.int8),
                data=data.astype(np.int8), scale=[float(v) for v in scale],
                zero_point=[0] * m, quantized_dimension=3 if depthwise else 0,
            ))  # fmt: skip
            w_index = self.out.add(
                TensorSpec(f"{node.input[1]}_tfl", list(data.shape), np.dtype(np.float32))
            )
            self.out.ops.append(OpSpec(B.DEQUANTIZE, [q_index], [w_index], None, 2))
        bias = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        b_index = self._float_constant(
            f"{node.name}_bias", bias if bias is not None else np.zeros(m)
        )
        y, activation = self._float_out(node, self._nhwc_shape(node.output[0]), True)
        self._append_conv(
            node, [x.index, w_index, b_index], y, depthwise, multiplier, padding, activation
        )

    def float_add(self, node: onnx.NodeProto) -> None:
        a, b_ = self._float_of(node.input[0]), self._float_of(node.input[1])
        shape = list(self.out.tensors[a.index].shape)
        y, activation = self._float_out(node, shape, a.nhwc)

        def options(b: object) -> tuple[int, int]:
            tflite.AddOptionsStart(b)
            tflite.AddOptionsAddFusedActivationFunction(b, activation)
            return tflite.BuiltinOptions.AddOptions, tflite.AddOptionsEnd(b)

        self.out.ops.append(OpSpec(B.ADD, [a.index, b_.index], [y], options))

    def float_activation(self, node: onnx.NodeProto) -> None:
        x = self._float_of(node.input[0])
        low = self.consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        high = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if node.op_type == "Relu":
            code = B.RELU
        elif low is not None and high is not None and (float(low), float(high)) == (0.0, 6.0):
            code = B.RELU6
        else:
            raise ModelError(f"Clip {node.name!r}: only Relu and Clip(0, 6) have TFLite forms here")
        y = self.out.add(TensorSpec(node.output[0], list(self.out.tensors[x.index].shape),
                                    np.dtype(np.float32)))  # fmt: skip
        self.floats[node.output[0]] = _Act(y, x.nhwc)
        self.out.ops.append(OpSpec(code, [x.index], [y]))

    def quantize_float(self, node: onnx.NodeProto) -> None:
        """A QuantizeLinear of a float tensor computed here: the float layer's way back to int8."""
        if node.output[0] in self.acts or node.input[0] not in self.floats:
            return  # already an int8 op's output grid, or the model input (handled there)
        x = self.floats[node.input[0]]
        y = self._int8(node.output[0], list(self.out.tensors[x.index].shape), self._grid(node))
        self.out.ops.append(OpSpec(B.QUANTIZE, [x.index], [y], None, 2))
        self._bind(node.output[0], _Act(y, x.nhwc))

    def _runs_int8(self, node: onnx.NodeProto) -> bool:
        """Whether ``node`` computes on int8 here (else it is a layer kept float)."""
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            weight = self.index.producer.get(node.input[1])
            return (
                node.input[0] in self.acts
                and weight is not None
                and (weight.op_type == "DequantizeLinear" and weight.input[0] in self.consts)
            )
        data = [n for n in node.input if n and n not in self.consts]
        if node.op_type in ("Flatten", "Reshape", "MaxPool", "AveragePool", "GlobalAveragePool",
                            "Softmax", "Sigmoid"):  # fmt: skip
            data = data[:1]
        elif node.op_type != "Concat":
            data = data[:2]
        return all(n in self.acts for n in data)

    # --- the whole graph -------------------------------------------------------------------------

    def convert(self) -> TFLiteModel:
        self.folded: dict[str, tuple[int, int, int]] = {}
        graph = self.plain.graph
        for value in graph.input:
            if value.name in self.consts:
                continue
            self._input(value)
        handlers = {
            "Conv": self.conv, "Gemm": self.fully_connected, "MatMul": self.fully_connected,
            "MaxPool": self.pool, "AveragePool": self.pool, "GlobalAveragePool": self.pool,
            "Flatten": self.flatten, "Reshape": self.flatten, "Add": self.elementwise,
            "Mul": self.elementwise, "Concat": self.concat, "Softmax": self.probability,
            "Sigmoid": self.probability,
        }  # fmt: skip
        float_handlers = {
            "Conv": self.float_conv, "Add": self.float_add, "Relu": self.float_activation,
            "Clip": self.float_activation,
        }  # fmt: skip
        for node in graph.node:
            if node.name in self.constant_nodes or node.name in self.fused_away:
                continue
            if node.op_type == "QuantizeLinear":
                self.quantize_float(node)
                continue
            if node.op_type in ("DequantizeLinear", "Constant"):
                continue  # absorbed into the int8 tensors' grids
            if not self._runs_int8(node):
                float_handler = float_handlers.get(node.op_type)
                if float_handler is None:
                    raise ModelError(
                        f"node {node.name!r} ({node.op_type}) computes in float in this model; "
                        "quanta's TFLite export writes float layers only for Conv, Add, Relu "
                        "and Clip(0, 6)"
                    )
                float_handler(node)
                continue
            handler = handlers.get(node.op_type)
            if handler is None:
                raise ModelError(
                    f"node {node.name!r} is {node.op_type}, which quanta's TFLite export does not "
                    f"support; supported: {', '.join(SUPPORTED_OPS)}"
                )
            handler(node)
        for value in graph.output:
            act = self._act_of(value.name)
            t = self.out.tensors[act.index]
            shape = t.shape if not act.nhwc else [t.shape[0], t.shape[3], t.shape[1], t.shape[2]]
            source = act.index
            if act.nhwc:  # back to the model's NCHW output layout
                source = self._int8(f"{value.name}_nchw", shape, (t.scale[0], t.zero_point[0]))  # type: ignore[index]
                perm = self.out.add(TensorSpec(f"{value.name}_perm", [4], np.dtype(np.int32),
                                               data=np.array([0, 3, 1, 2], np.int32)))  # fmt: skip
                self.out.ops.append(
                    OpSpec(B.TRANSPOSE, [act.index, perm], [source], _transpose_options)
                )
            y = self.out.add(TensorSpec(value.name, list(shape), np.dtype(np.float32)))
            self.out.ops.append(OpSpec(B.DEQUANTIZE, [source], [y], None, 2))
            self.out.outputs.append(y)
        return self.out

    def _input(self, value: onnx.ValueInfoProto) -> None:
        users = self.index.consumers.get(value.name, [])
        elem = value.type.tensor_type.elem_type
        dims = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        nhwc = len(dims) == 4
        shape = [dims[0], dims[2], dims[3], dims[1]] if nhwc else dims
        if elem == onnx.TensorProto.FLOAT:
            q = next((u for u in users if u.op_type == "QuantizeLinear"), None)
            x = self.out.add(TensorSpec(value.name, shape, np.dtype(np.float32)))
            self.out.inputs.append(x)
            self.floats[value.name] = _Act(x, nhwc)  # for a first layer kept float
            if q is None:
                return
            y = self._int8(q.output[0], shape, self._grid(q))
        elif elem == onnx.TensorProto.UINT8:
            dq = next((u for u in users if u.op_type == "DequantizeLinear"), None)
            if dq is None:
                raise ModelError(f"uint8 input {value.name!r} has no DequantizeLinear")
            scale = float(self.consts[dq.input[1]])
            zp = int(self.consts[dq.input[2]]) if len(dq.input) > 2 else 0
            x = self.out.add(TensorSpec(value.name, shape, np.dtype(np.uint8), scale=[scale],
                                        zero_point=[zp]))  # fmt: skip
            # the DequantizeLinear -> QuantizeLinear pair that follows is the requantization
            q = next(
                u
                for u in self.index.consumers.get(dq.output[0], [])
                if u.op_type == "QuantizeLinear"
            )
            y = self._int8(q.output[0], shape, self._grid(q))
        else:
            raise ModelError(
                f"input {value.name!r} has element type {elem}; expected float or uint8"
            )
        self.out.inputs.append(x)
        self.out.ops.append(OpSpec(B.QUANTIZE, [x], [y], None, 2))
        self._bind(q.output[0], _Act(y, nhwc))


def _pad_options(b: object) -> tuple[int, int]:
    tflite.PadOptionsStart(b)
    return tflite.BuiltinOptions.PadOptions, tflite.PadOptionsEnd(b)


def _transpose_options(b: object) -> tuple[int, int]:
    tflite.TransposeOptionsStart(b)
    return tflite.BuiltinOptions.TransposeOptions, tflite.TransposeOptionsEnd(b)


def onnx_to_tflite(
    model: onnx.ModelProto, output_ranges: Mapping[str, tuple[float, float]] | None = None
) -> bytes:
    """The TFLite flatbuffer of a quanta static (QDQ) model; see the module doc."""
    return _Converter(model, output_ranges or {}).convert().serialize()
