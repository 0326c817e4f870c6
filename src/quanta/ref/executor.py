"""Run a quantized ONNX model with integer arithmetic, node by node, in NumPy.

The QDQ graph is read the way an integer runtime reads it:

- ``DequantizeLinear`` of a constant is a weight or bias: its integers and grid.
- ``DequantizeLinear`` of an integer tensor passes the integers on (no float is made).
- an op with an integer kernel (``quanta.ref.ops``) whose data inputs are all integers runs
  on them and yields integers (an int32 accumulator for Conv/Gemm/MatMul/Add/Mul/pools).
- ``QuantizeLinear`` of an integer tensor requantizes it: ``M = s_in / s_out`` as a fixed-point
  multiplier, rounding and clamping in integers (``quanta.ref.fixed_point``).
- ``QuantizeLinear`` of a float tensor (the model's input, or the output of a float op) is the
  edge of the integer region: float32 division rounded half to even, as ONNX specifies.

Anything else runs in float with ``onnx.reference`` on dequantized inputs, and is counted in
``ReferenceRun.float_ops`` with the reason, so a model with none is integer-only end to end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from quanta.errors import DataError, InputError, ModelError
from quanta.graph.compact import expand_qdq
from quanta.opfacts import FACTS, OpKind
from quanta.quant import QParams, quantize
from quanta.ref.fixed_point import ROUNDINGS, requantize
from quanta.ref.ops import KERNELS, NotInteger, OpContext
from quanta.ref.tensor import QTensor, same_grid

__all__ = ["ReferenceRun", "run_reference", "requantize_to"]

_DTYPE_NAMES = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8", np.dtype(np.int32): "int32"}


@dataclass
class ReferenceRun:
    """What one run produced.

    Attributes:
        outputs: each graph output as the model returns it (float32, or integers).
        integers: the integer form of each output computed in integers: int8/uint8 values
            with their grid, or the int32 accumulator of an op whose output is float (a
            QGemm writing float logits), with its unit.
        integer_ops: op types run by integer kernels, with counts.
        float_ops: op types run in float, with counts (empty: integer-only).
        float_reasons: node name -> why it ran in float.
        quantized: the integers of every QuantizeLinear output, as computed here.
        int_inputs: graph inputs that are integers (raw uint8 pixels), on their grid.
        integer_nodes: names of the nodes run by integer kernels.
        folded: op types of constant subgraphs evaluated once (weight decoding), with counts.
        saturated: with ``emulate_avx2``, per Conv/Gemm/MatMul node: (accumulators the int16
            saturation changed, accumulators).
        lockstep: with ``substitute``, for each substituted tensor the integers computed here
            (before substitution), to compare with the substitute.
    """

    outputs: dict[str, np.ndarray]
    integers: dict[str, QTensor]
    integer_ops: Counter[str] = field(default_factory=Counter)
    float_ops: Counter[str] = field(default_factory=Counter)
    float_reasons: dict[str, str] = field(default_factory=dict)
    lockstep: dict[str, QTensor] = field(default_factory=dict)
    quantized: dict[str, QTensor] = field(default_factory=dict)
    int_inputs: dict[str, QTensor] = field(default_factory=dict)
    integer_nodes: set[str] = field(default_factory=set)
    folded: Counter[str] = field(default_factory=Counter)
    saturated: dict[str, tuple[int, int]] = field(default_factory=dict)

    def ran_integer(self, node: str) -> bool:
        return node in self.integer_nodes

    @property
    def integer_only(self) -> bool:
        return not self.float_ops


def requantize_to(t: QTensor, out: QParams, rounding: str = "double") -> QTensor:
    """``t`` on the grid ``out``: a copy when the grids match, else the fixed-point requantization
    ``clamp(Z_out + (q - Z) * s / s_out)`` with integer rounding."""
    if same_grid(t.qp, out):
        return QTensor(np.clip(t.q, out.qmin, out.qmax), out)
    scale = t.qp.scale.astype(np.float64).reshape(t.qp.broadcast_shape(t.q.ndim))
    multiplier = scale / np.float64(out.scale)
    q = requantize(t.centered(), multiplier, int(out.zero_point), out.qmin, out.qmax, rounding)
    return QTensor(q, out)


def _grid(node: onnx.NodeProto, consts: Mapping[str, np.ndarray], dtype: np.dtype) -> QParams:
    scale = consts.get(node.input[1])
    if scale is None:
        raise ModelError(f"{node.op_type} {node.name!r}: its scale is not a constant")
    if len(node.input) > 2 and node.input[2]:
        zp = consts.get(node.input[2])
        if zp is None:
            raise ModelError(f"{node.op_type} {node.name!r}: its zero point is not a constant")
        dtype = zp.dtype
    else:
        zp = np.zeros(scale.shape, dtype)
    name = _DTYPE_NAMES.get(np.dtype(dtype))
    if name is None:
        raise ModelError(
            f"{node.op_type} {node.name!r} uses {np.dtype(dtype)}; the reference executor "
            "handles int8, uint8 and int32"
        )
    axis = None
    if scale.ndim == 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    return QParams(scale, zp.astype(np.dtype(dtype)), name, axis)


def _normalized(qp: QParams, rank: int) -> QParams:
    if qp.axis is None or qp.axis >= 0:
        return qp
    return QParams(qp.scale, qp.zero_point, qp.dtype, qp.axis % rank)


def run_reference(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    substitute: Mapping[str, np.ndarray] | None = None,
    rounding: str = "double",
    emulate_avx2: bool = False,
) -> ReferenceRun:
    """Run ``model`` (quanta's QDQ, compact or plain) on ``feeds`` with integer arithmetic.

    ``substitute`` maps QuantizeLinear outputs to integers computed elsewhere (ONNX Runtime's):
    each is computed here, kept in ``ReferenceRun.lockstep``, then replaced by the substitute,
    so that every op is checked on the same inputs the other runtime had (no compounding).
    ``rounding`` of the fixed-point multiplications: "double" (gemmlowp / TFLite's reference
    kernels) or "single" (``quanta.ref.fixed_point``). ``emulate_avx2``: compute Conv/Gemm/
    MatMul as an AVX2 CPU without VNNI does, u8 x s8 products added in pairs in saturating
    int16 (``quanta.ref.saturation``); ``ReferenceRun.saturated`` counts what that changed.
    """
    if rounding not in ROUNDINGS:
        raise InputError(
            f"rounding {rounding!r} is not known; expected one of {', '.join(ROUNDINGS)}"
        )
    plain = expand_qdq(model)
    graph = plain.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in consts]
    missing = [name for name in inputs if name not in feeds]
    if missing:
        raise DataError(f"inputs {missing} are missing; the model takes {inputs}")
    floats = {name: np.asarray(feeds[name]) for name in inputs}
    executor = _Executor(plain, consts, floats, substitute or {}, rounding, emulate_avx2)
    for node in graph.node:
        executor.execute(node)
    return executor.finish(graph.output)


class _Executor:
    """One run's state: every tensor computed so far, as a constant (initializers and folded
    subgraphs), a float array, or integers on their grid, and the ``ReferenceRun`` it fills."""

    def __init__(
        self,
        plain: onnx.ModelProto,
        consts: dict[str, np.ndarray],
        floats: dict[str, np.ndarray],
        substitute: Mapping[str, np.ndarray],
        rounding: str,
        emulate_avx2: bool,
    ) -> None:
        self.consts = consts
        self.floats = floats
        self.ints: dict[str, QTensor] = {}
        self.opsets = {o.domain: o.version for o in plain.opset_import}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in plain.graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.run = ReferenceRun({}, {})
        self.substitute = substitute
        self.rounding = rounding
        self.emulate_avx2 = emulate_avx2

    def execute(self, node: onnx.NodeProto) -> None:
        """Run ``node`` in integers where it can be, else in float."""
        op = node.op_type
        if op == "Constant" and not node.input:
            value = next(a for a in node.attribute if a.name == "value")
            self.consts[node.output[0]] = numpy_helper.to_array(value.t)
            return
        if op == "DequantizeLinear" and self._dequantize(node):
            return
        if op == "QuantizeLinear" and node.input[0] not in self.consts:
            self._quantize(node)
            return
        if node.input and all(not name or name in self.consts for name in node.input):
            self._fold(node)
            return
        reason = _run_integer(
            node, self.consts, self.ints, self.readers, self.run, self.rounding, self.emulate_avx2
        )
        if reason is not None:
            self._run_float(node, reason)

    def _fold(self, node: onnx.NodeProto) -> None:
        """A constant subgraph (an int8 weight decoded by Cast and Mul): folded, as every
        runtime folds it before running; not arithmetic on data."""
        feed = {name: self.consts[name] for name in node.input if name}
        results = ReferenceEvaluator(node, opsets=self.opsets).run(None, feed)
        for name, value in zip(node.output, results, strict=False):
            if name:
                self.consts[name] = np.asarray(value)
        self.run.folded[node.op_type] += 1

    def _dequantize(self, node: onnx.NodeProto) -> bool:
        """A DequantizeLinear of integers passes them on with their grid; False when its input
        is a float tensor (then it runs in float)."""
        source = node.input[0]
        values = self.consts.get(source)
        if values is None and source in self.ints:
            values = self.ints[source].q
        elif values is None and source in self.floats and self.floats[source].dtype.kind in "iu":
            values = self.floats[source]  # an integer graph input (e.g. raw uint8 pixels)
        if values is None:
            return False
        qp = _normalized(_grid(node, self.consts, values.dtype), values.ndim)
        self.ints[node.output[0]] = QTensor(np.asarray(values).astype(np.int64), qp)
        if source in self.floats:
            self.run.int_inputs[source] = self.ints[node.output[0]]
        return True

    def _quantize(self, node: onnx.NodeProto) -> None:
        """Requantize integers, or quantize a float tensor at the edge of the integer region."""
        source, out = node.input[0], node.output[0]
        qp = _grid(node, self.consts, np.dtype(np.uint8))
        if source in self.ints:
            self.ints[out] = requantize_to(self.ints[source], qp, self.rounding)
            self.run.integer_ops["requantize"] += 1
        else:
            x = np.asarray(self.floats[source], np.float32)
            q = quantize(x, _normalized(qp, x.ndim)).astype(np.int64)
            self.ints[out] = QTensor(q, _normalized(qp, x.ndim))
        self.run.quantized[out] = self.ints[out]
        given = self.substitute.get(out)
        if given is not None:
            mine = self.ints[out]
            self.run.lockstep[out] = mine
            self.ints[out] = QTensor(np.asarray(given).astype(np.int64), mine.qp)

    def _run_float(self, node: onnx.NodeProto, reason: str) -> None:
        feed = {name: self._as_float(name) for name in node.input if name}
        override = _FLOAT_OVERRIDES.get(node.op_type)
        if override is not None:
            results: list[Any] = [override(*(feed[name] for name in node.input if name))]
        else:
            results = list(ReferenceEvaluator(node, opsets=self.opsets).run(None, feed))
        for name, value in zip(node.output, results, strict=False):
            if name:
                self.floats[name] = np.asarray(value)
        self.run.float_ops[node.op_type] += 1
        self.run.float_reasons[node.name] = reason

    def _as_float(self, name: str) -> np.ndarray:
        if name in self.floats:
            return self.floats[name]
        if name in self.ints:
            return self.ints[name].real()
        return self.consts[name]

    def finish(self, outputs: Iterable[onnx.ValueInfoProto]) -> ReferenceRun:
        """The run, with each graph output as the model returns it."""
        for out in outputs:
            if out.name in self.ints:
                t = self.ints[out.name]
                self.run.integers[out.name] = t
                kind = out.type.tensor_type.elem_type
                self.run.outputs[out.name] = t.real() if kind == onnx.TensorProto.FLOAT else t.q
            else:
                self.run.outputs[out.name] = self.floats[out.name]
        return self.run


def _run_integer(
    node: onnx.NodeProto,
    consts: dict[str, np.ndarray],
    ints: dict[str, QTensor],
    readers: Mapping[str, list[onnx.NodeProto]],
    run: ReferenceRun,
    rounding: str,
    emulate_avx2: bool = False,
) -> str | None:
    """Run ``node`` with its integer kernel; None if done, else why it must run in float."""
    entry = KERNELS.get(node.op_type)
    if entry is None and node.op_type in _DYNAMIC_INT8:
        return "dynamic int8 (a range measured on every run), which the reference does not model"
    if entry is None:
        return f"no integer kernel for {node.op_type}"
    positions = range(len(node.input)) if entry.data_inputs is None else entry.data_inputs
    for k in positions:
        if k < len(node.input) and node.input[k] and node.input[k] not in ints:
            return f"input {node.input[k]!r} is not quantized"
    users = readers.get(node.output[0], [])
    out = None
    if len(users) == 1 and users[0].op_type == "QuantizeLinear":
        out = _grid(users[0], consts, np.dtype(np.uint8))
    ctx = OpContext(node, consts, out, rounding, emulate_avx2)
    try:
        results = entry.kernel(ctx, [ints.get(name) if name else None for name in node.input])
    except NotInteger as exc:
        return str(exc)
    for name, value in zip(node.output, results, strict=False):
        if name:
            ints[name] = value
    run.integer_ops[node.op_type] += 1
    run.integer_nodes.add(node.name)
    if emulate_avx2 and _sums_products(node.op_type):
        run.saturated[node.name] = (ctx.saturated, int(results[0].q.size))
    return None


# The ops of dynamic int8 (a range measured on every run): float in the reference's eyes
_DYNAMIC_INT8 = frozenset(
    {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
     "MatMulIntegerToFloat", "DynamicQuantizeLSTM"}
)  # fmt: skip


def _sums_products(op_type: str) -> bool:
    """Whether the op multiplies activations by weights (where AVX2's int16 pair sums saturate)."""
    facts = FACTS.get(op_type)
    return facts is not None and facts.kind is OpKind.COMPUTE


def _global_max_pool(x: np.ndarray) -> np.ndarray:
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# NOTE: ops whose onnx.reference implementation is wrong for some inputs: its GlobalMaxPool
# drops the channel axis of a 3-D (N, C, L) input, returning (N, 1) (onnx 1.20; 4-D is right).
_FLOAT_OVERRIDES = {"GlobalMaxPool": _global_max_pool}
