"""The state of one QDQ ONNX -> TFLite conversion, shared by the op handlers in ``ops/``.

It holds the ONNX side (the plain QDQ graph, its constants and shapes) and the TFLite side (the
``TFLiteModel`` being written), and maps one onto the other: each ONNX tensor that is int8 in
TFLite has an ``Act`` in ``acts``, each one written float (a layer the model keeps float) an
``Act`` in ``floats``. An ``Act`` also records the layout: ONNX is NCHW, TFLite NHWC, and a 4-D
activation is carried in NHWC.

Handlers add tensors and operators in the order TFLite will run them; that order is the file's
byte order, so a refactoring that reorders calls here changes the model bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import tflite
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from quanta.errors import ModelError
from quanta.graph.compact import expand_qdq
from quanta.graph.index import GraphIndex
from quanta.quant import choose_qparams
from quanta.tflite.writer import OpSpec, OptionsBuilder, TensorSpec, TFLiteModel, options

__all__ = ["PROBABILITY_GRID", "PROBABILITY_OPS", "Act", "Context", "attr"]

# Softmax and Sigmoid run on int8 in TFLite with this fixed output grid (scale, zero point);
# quanta keeps them float in ONNX, so the int8 grid of their *input* is measured by the caller.
PROBABILITY_GRID = (1 / 256, -128)
PROBABILITY_OPS = frozenset({"Softmax", "Sigmoid"})


@dataclass
class Act:
    """A TFLite tensor standing for an ONNX tensor (int8 in ``acts``, float32 in ``floats``)."""

    index: int
    nhwc: bool  # a 4-D ONNX NCHW tensor held as NHWC


def attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class Context:
    """One conversion: read by every handler, written through ``add``/``emit``/``bind``.

    ``int8_ops`` are the op types the int8 path writes, named in errors (the registry lives in
    ``quanta.tflite.ops``, which imports this module).
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        output_ranges: Mapping[str, tuple[float, float]],
        int8_ops: Sequence[str],
    ) -> None:
        self.plain = expand_qdq(model)
        self.index = GraphIndex(self.plain)
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.plain.graph.initializer}
        self.initial = dict(self.consts)  # the stored initializers, before constant folding
        self.out = TFLiteModel(description="quanta export-tflite")
        self.acts: dict[str, Act] = {}
        self.output_ranges = output_ranges
        self.int8_ops = tuple(int8_ops)
        self.shapes = self._shapes()
        self.floats: dict[str, Act] = {}  # float32 TFLite tensors standing for ONNX tensors
        self.fused_away: set[str] = set()  # Relu/Clip nodes folded into a float op
        # a Flatten/Reshape of NHWC folded into the FULLY_CONNECTED after it: name -> (C, H, W)
        self.folded: dict[str, tuple[int, int, int]] = {}
        self.constant_nodes: set[str] = set()
        self._fold_constants()

    def _fold_constants(self) -> None:
        """Evaluate constant subgraphs (an int8 weight decoded by Cast and Mul for a layer kept
        float) once: the TFLite file stores their float result."""
        for node in self.plain.graph.node:
            shape = self._static_shape(node) if node.op_type == "Shape" else None
            if shape is not None:
                self.consts[node.output[0]] = shape
                self.constant_nodes.add(node.name)
                continue
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") or not node.input:
                continue
            if all(not n or n in self.consts for n in node.input):
                for name, value in zip(node.output, self.evaluate(node), strict=False):
                    self.consts[name] = value
                self.constant_nodes.add(node.name)

    def evaluate(self, node: onnx.NodeProto) -> list[np.ndarray]:
        """``node``'s outputs on its constant inputs, as ONNX defines them (``onnx.reference``)."""
        opsets = {o.domain: o.version for o in self.plain.opset_import}
        values = ReferenceEvaluator(node, opsets=opsets).run(
            None, {n: self.consts[n] for n in node.input if n}
        )
        return [np.asarray(v) for v in values]

    def _static_shape(self, node: onnx.NodeProto) -> np.ndarray | None:
        """A Shape node's value where its input's dimensions are known but the batch (the
        file is written for batch 1, so shape arithmetic becomes constants); else None."""
        dims = self.shapes.get(node.input[0])
        if dims is None or any(d is None for d in dims[1:]):
            return None
        full = np.array([1 if d is None else d for d in dims], np.int64)
        start = int(next((a.i for a in node.attribute if a.name == "start"), 0))
        end = next((a.i for a in node.attribute if a.name == "end"), None)
        return full[start:end]

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

    # --- the TFLite tensor table and operator list ---------------------------------------------

    def add(self, tensor: TensorSpec) -> int:
        return self.out.add(tensor)

    def emit(
        self,
        code: int,
        inputs: list[int],
        outputs: list[int],
        options: OptionsBuilder | None = None,
        version: int = 1,
    ) -> None:
        """Append a builtin operator (``code``: a ``tflite.BuiltinOperator``)."""
        self.out.ops.append(OpSpec(code, inputs, outputs, options, version))

    def float_of(self, name: str) -> Act:
        """The float32 TFLite tensor of an ONNX tensor: computed float, or an int8 one behind
        a DEQUANTIZE (written once)."""
        if name in self.floats:
            return self.floats[name]
        act = self.act_of(name)
        y = self.add(TensorSpec(f"{name}_float", self.shape_of(act), np.dtype(np.float32)))
        self.emit(tflite.BuiltinOperator.DEQUANTIZE, [act.index], [y], None, 2)
        self.floats[name] = Act(y, act.nhwc)
        return self.floats[name]

    def float_constant(self, name: str) -> Act:
        """The float32 TFLite tensor of the ONNX constant ``name``, written once."""
        if name not in self.floats:
            value = self.consts[name].astype(np.float32)
            self.floats[name] = Act(self.constant(name, value), False)
        return self.floats[name]

    def constant(self, name: str, data: np.ndarray) -> int:
        """A constant tensor holding ``data`` (its shape and dtype)."""
        return self.add(TensorSpec(name, list(data.shape), data.dtype, data=data))

    def int8_weight(self, name: str, data: np.ndarray, scales: np.ndarray, axis: int = 0) -> int:
        """A constant int8 weight, symmetric (zero point 0) per channel along ``axis``."""
        return self.add(
            TensorSpec(
                name,
                list(data.shape),
                np.dtype(np.int8),
                data=data.astype(np.int8),
                scale=[float(s) for s in scales],
                zero_point=[0] * len(scales),
                quantized_dimension=axis,
            )
        )

    def int8(self, name: str, shape: list[int], grid: tuple[float, int]) -> int:
        return self.add(
            TensorSpec(name, shape, np.dtype(np.int8), scale=[grid[0]], zero_point=[grid[1]])
        )

    def grid_of(self, index: int) -> tuple[float, int]:
        """(scale, zero point) of the per-tensor int8 tensor ``index``."""
        t = self.out.tensors[index]
        return t.scale[0], t.zero_point[0]  # type: ignore[index]

    def shape_of(self, act: Act) -> list[int]:
        return list(self.out.tensors[act.index].shape)

    # --- ONNX tensors as int8 TFLite tensors ---------------------------------------------------

    def grid(self, q_node: onnx.NodeProto) -> tuple[float, int]:
        """(scale, int8 zero point) of a QuantizeLinear/DequantizeLinear's per-tensor grid, or
        of a per-channel one whose scales and zero points are all equal (quanta's DequantizeLinear
        of a layer kept float, ``quanta.graph.float_readers``)."""
        scale = np.asarray(self.consts[q_node.input[1]])
        zp = np.asarray(self.consts[q_node.input[2]] if len(q_node.input) > 2 else np.uint8(0))
        if scale.ndim > 1 or np.ptp(scale) != 0 or np.ptp(zp) != 0:
            raise ModelError(f"{q_node.name}: per-axis activation grids have no TFLite form")
        first = zp.reshape(-1)[0]
        z = int(first) - 128 if zp.dtype == np.uint8 else int(first)
        return float(scale.reshape(-1)[0]), z

    def bind(self, q_output: str, act: Act) -> None:
        """``act`` stands for a QuantizeLinear's output and for each DequantizeLinear of it on
        its grid. A DequantizeLinear that reads the integers on another scale (same zero point)
        stands for ``act`` times the ratio of the scales: quanta's int8 HardSwish quantizes
        ``x + 3`` onto steps of 6/255 (saturation clips it to [0, 6]) and reads it back on
        steps of 1/255, dividing by 6; TFLite gets an int8 MUL by a constant 1 on that ratio's
        scale, exact on the output grid. Other zero points are left unbound (an error names
        the tensor when it is read)."""
        self.acts[q_output] = act
        grid = self.grid_of(act.index)
        for dq in self.index.consumers.get(q_output, []):
            if dq.op_type != "DequantizeLinear":
                continue
            other = self.grid(dq)
            if other == grid:
                self.acts[dq.output[0]] = act
            elif other[1] == grid[1] and other[0] > 0 and grid[0] > 0:
                one = self.add(
                    TensorSpec(f"{dq.output[0]}_ratio", [], np.dtype(np.int8),
                               data=np.array(1, np.int8), scale=[other[0] / grid[0]],
                               zero_point=[0])
                )  # fmt: skip
                y = self.int8(dq.output[0], self.shape_of(act), other)
                self.emit(
                    tflite.BuiltinOperator.MUL, [act.index, one], [y],
                    options("MulOptions"), 2,
                )  # fmt: skip
                self.acts[dq.output[0]] = Act(y, act.nhwc)

    def nhwc_shape(self, name: str, batch: int = 1) -> list[int]:
        dims = self.shapes.get(name)
        if dims is None:
            raise ModelError(f"the shape of tensor {name!r} is unknown; expected static shapes")
        full = [batch if d is None else d for d in dims]
        return [full[0], full[2], full[3], full[1]] if len(full) == 4 else full

    def int8_constant(self, name: str) -> bool:
        """Whether ``name`` is a DequantizeLinear of a per-tensor 8-bit constant (an operand
        of an int8 op, such as the 3 of a HardSwish rewritten onto int8 Add and Mul)."""
        dq = self.index.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.consts:
            return False
        value, scale = self.consts[dq.input[0]], self.consts.get(dq.input[1])
        return value.dtype in (np.int8, np.uint8) and scale is not None and scale.ndim == 0

    def act_of(self, name: str) -> Act:
        act = self.acts.get(name)
        if act is None and self.int8_constant(name):
            dq = self.index.producer[name]
            value = self.consts[dq.input[0]]
            shift = 128 if value.dtype == np.uint8 else 0  # a uint8 grid as the same reals in int8
            scale, zero_point = self.grid(dq)
            data = (value.astype(np.int16) - shift).astype(np.int8)
            index = self.add(
                TensorSpec(f"{name}_int8", list(data.shape), np.dtype(np.int8), data=data,
                           scale=[scale], zero_point=[zero_point])
            )  # fmt: skip
            act = self.acts[name] = Act(index, False)
        if act is None:
            raise ModelError(
                f"tensor {name!r} is float in this model, written by an op quanta's TFLite "
                "export cannot write in float (it can for Conv, Add, Relu and Clip(0, 6))"
            )
        return act

    def weight(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The int8 values and per-channel scales of a weight DequantizeLinear."""
        dq = self.index.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in self.consts:
            raise ModelError(f"weight {name!r} is not an int8 constant; export a static model")
        return self.consts[dq.input[0]], np.atleast_1d(self.consts[dq.input[1]])

    def bias(self, name: str | None, channels: int, scale: np.ndarray) -> int:
        """The int32 bias tensor (zeros when the layer has none), on ``s_in * s_w``."""
        values = self.weight(name)[0].astype(np.int32) if name else np.zeros(channels, np.int32)
        scales = [float(s) for s in np.broadcast_to(scale, (channels,))]
        return self.add(
            TensorSpec(
                f"{name or 'bias'}_i32",
                [channels],
                np.dtype(np.int32),
                data=values,
                scale=scales,
                zero_point=[0] * channels,
            )
        )

    def output_act(self, node: onnx.NodeProto, shape: list[int], nhwc: bool) -> int:
        """The int8 tensor a compute node writes: its QuantizeLinear's grid, or for a float
        graph output the grid measured by the caller (then a DEQUANTIZE follows)."""
        out_name = node.output[0]
        users = self.index.consumers.get(out_name, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            q = users[0]
            index = self.int8(q.output[0], shape, self.grid(q))
            self.bind(q.output[0], Act(index, nhwc))
            return index
        into_probability = bool(users) and all(u.op_type in PROBABILITY_OPS for u in users)
        is_output = out_name in self.index.graph_outputs
        if is_output or into_probability:
            if out_name not in self.output_ranges:
                what = "output" if is_output else f"{users[0].op_type} input"
                raise ModelError(
                    f"{what} {out_name!r} is float, written by {node.op_type} {node.name!r}; "
                    "TFLite needs its int8 range: pass --calibration to measure it (a model "
                    "written by quanta quantize records it)"
                )
            lo, hi = self.output_ranges[out_name]
            qp = choose_qparams(lo, hi, "int8")
            index = self.int8(f"{out_name}_int8", shape, (float(qp.scale), int(qp.zero_point)))
            self.acts[out_name] = Act(index, nhwc)
            return index
        readers = ", ".join(f"{u.name!r} ({u.op_type})" for u in users) or "nothing"
        raise ModelError(
            f"{node.op_type} {node.name!r} writes float for {readers}: those ops stay float in "
            f"this model, and quanta's TFLite export supports only int8 ops "
            f"({', '.join(self.int8_ops)})"
        )

    def requantized(self, act: Act, grid: tuple[float, int], name: str) -> int:
        """``act`` on ``grid``: itself if it is already there, else a QUANTIZE (int8 -> int8)."""
        if self.grid_of(act.index) == grid:
            return act.index
        y = self.int8(name, self.shape_of(act), grid)
        self.emit(tflite.BuiltinOperator.QUANTIZE, [act.index], [y], None, 2)
        return y

    def tflite_axis(self, node: onnx.NodeProto, rank: int, nhwc: bool) -> int:
        """The TFLite axis of an ONNX ``axis`` attribute (NCHW axis -> NHWC axis)."""
        default = -1 if node.op_type == "Softmax" else 0
        axis = int(attr(node, "axis", default))  # type: ignore[call-overload]
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise ModelError(f"{node.op_type} {node.name!r}: axis {axis} is outside rank {rank}")
        return [0, 3, 1, 2][axis] if nhwc else axis
