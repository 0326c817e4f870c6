"""``quanta verify``: the integer reference executor beside ONNX Runtime.

Two comparisons, both on integer grids:

- **op by op** (the headline): every integer op is cut out of the model with its weights, input
  DequantizeLinear and output QuantizeLinear (ONNX Runtime fuses it into the same QLinearConv /
  QGemm / QLinearAdd kernel as in the full model) and both runtimes run it on the same integer
  inputs. Each tensor's difference is then that op's arithmetic alone: the proof that the int8
  graph is the integer computation it claims to be. (Exposing intermediate tensors of the full
  model instead would change which kernels ONNX Runtime picks: it stops fusing.)
- **end to end**: each runtime alone from the model input; a one-step difference early on can
  move later tensors, so these figures include that propagation.

An int8/uint8 tensor is compared by its integers; a float output written by an integer op
(QGemm's float logits) by its int32 accumulator, ONNX Runtime's value being mapped back by
``round(y / unit) + Z``.

Why they differ at all: ONNX Runtime requantizes with a float32 multiplier and rounds half to
even; the reference uses a 31-bit fixed-point multiplier and rounds ties away from zero
(gemmlowp). They agree except where the exact result lies on or within float32 rounding of a
tie, by one step. (On CPUs without VNNI, ONNX Runtime's u8 x s8 kernels (``vpmaddubsw``) add
pairs of products in int16 with saturation: where that saturates the difference is larger, and
the op-by-op figures show which op.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from quanta.graph.compact import expand_qdq
from quanta.ref.executor import ReferenceRun, run_reference
from quanta.ref.op_models import OpModel, op_models
from quanta.ref.tensor import QTensor
from quanta.runtime import make_session
from quanta.runtime.batching import chunks, fixed_batch

__all__ = ["Agreement", "OutputAgreement", "VerifyReport", "verify"]


@dataclass
class Agreement:
    """Share of equal values and the largest difference in steps (None: a float output with
    no integer grid, compared by value), accumulated over batches."""

    equal: int = 0
    values: int = 0
    max_diff_steps: int | None = 0
    max_abs_diff: float = 0.0
    _dot: float = 0.0
    _norms: tuple[float, float] = (0.0, 0.0)

    @property
    def cosine(self) -> float:
        """Cosine similarity of all values (real, not integers) of the two runtimes."""
        a, b = self._norms
        return self._dot / float(np.sqrt(a * b)) if a > 0 and b > 0 else 1.0

    @property
    def equal_fraction(self) -> float:
        return self.equal / self.values if self.values else 1.0

    def add(self, ort: np.ndarray, ref_values: np.ndarray, ref: QTensor | None) -> None:
        ort = np.asarray(ort)
        x, y = ort.astype(np.float64).ravel(), ref_values.astype(np.float64).ravel()
        if ref is not None and ort.dtype.kind in "iu":  # integers: compare the real values
            x = (x - float(ref.qp.zero_point.reshape(-1)[0])) * float(ref.qp.scale.reshape(-1)[0])
        self._dot += float(x @ y)
        self._norms = (self._norms[0] + float(x @ x), self._norms[1] + float(y @ y))
        self.max_abs_diff = max(
            self.max_abs_diff,
            float(np.abs(ort.astype(np.float64) - ref_values.astype(np.float64)).max(initial=0)),
        )
        if ref is None:
            differ = ort != ref_values
            self.max_diff_steps = None
        else:
            steps = np.abs(_on_grid(ort, ref) - ref.q)
            differ = steps != 0
            if self.max_diff_steps is not None:
                self.max_diff_steps = max(self.max_diff_steps, int(steps.max(initial=0)))
        self.equal += int(differ.size - np.count_nonzero(differ))
        self.values += int(differ.size)

    def as_dict(self) -> dict[str, object]:
        return {
            "equal_fraction": self.equal_fraction,
            "max_diff_steps": self.max_diff_steps,
            "values": self.values,
            "max_abs_diff": self.max_abs_diff,
            "cosine": self.cosine,
        }


def _on_grid(y: np.ndarray, t: QTensor) -> np.ndarray:
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    scale = t.qp.scale.astype(np.float64).reshape(t.qp.broadcast_shape(y.ndim))
    return np.rint(y.astype(np.float64) / scale).astype(np.int64) + t.zero_point


@dataclass
class OutputAgreement:
    """One output (or quantized tensor): op-by-op and end-to-end agreement."""

    name: str
    grid: str = ""
    op_by_op: Agreement = field(default_factory=Agreement)
    end_to_end: Agreement | None = field(default_factory=Agreement)

    @property
    def equal_fraction(self) -> float:
        return self.op_by_op.equal_fraction

    @property
    def max_diff_steps(self) -> int | None:
        return self.op_by_op.max_diff_steps

    def as_dict(self) -> dict[str, object]:
        return {
            "equal_fraction": self.equal_fraction,
            "max_diff_steps": self.max_diff_steps,
            "grid": self.grid,
            "values": self.op_by_op.values,
            **({"end_to_end": self.end_to_end.as_dict()} if self.end_to_end else {}),
        }


@dataclass
class VerifyReport:
    outputs: dict[str, OutputAgreement]
    tensors: dict[str, OutputAgreement]
    integer_ops: dict[str, int]
    float_ops: dict[str, int]
    float_reasons: dict[str, str]
    samples: int
    from_float: list[str] = field(default_factory=list)
    # with emulate_avx2: per node (accumulators int16 saturation changed, accumulators), and
    # per output the agreement of the emulated run with the exact one
    saturation: dict[str, tuple[int, int]] = field(default_factory=dict)
    saturation_effect: dict[str, Agreement] = field(default_factory=dict)

    @property
    def integer_only(self) -> bool:
        return not self.float_ops

    def as_dict(self) -> dict[str, object]:
        return {
            "outputs": {name: o.as_dict() for name, o in self.outputs.items()},
            "compared": "op by op: each integer op run by both runtimes on the same integer "
            "inputs (end_to_end: each runtime alone from the model input)",
            "samples": self.samples,
            "integer_only": self.integer_only,
            "integer_ops": self.integer_ops,
            "float_ops": self.float_ops,
            "float_reasons": self.float_reasons,
            "tensors": {name: t.as_dict() for name, t in self.tensors.items()},
            "quantized_from_float": self.from_float,
            **(
                {
                    "avx2_saturation": {
                        node: {"saturated": s, "accumulators": t}
                        for node, (s, t) in self.saturation.items()
                    },
                    "avx2_effect_on_outputs": {
                        name: a.as_dict() for name, a in self.saturation_effect.items()
                    },
                }
                if self.saturation
                else {}
            ),
        }


_NUMPY = {"int8": np.int8, "uint8": np.uint8, "int32": np.int32}


def _grid_name(t: QTensor | None) -> str:
    if t is None:
        return "float (written by a float op)"
    if t.qp.dtype == "int32":
        return "int32 accumulator (float output of an integer op)"
    return t.qp.dtype


def verify(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    batch_size: int = 64,
    rounding: str = "single",
    emulate_avx2: bool = False,
) -> VerifyReport:
    """Run ``model`` on ``feeds`` in the reference executor and in ONNX Runtime; compare.

    ``batch_size`` samples per call, or exactly the model's batch where its inputs fix one
    (``quanta.runtime.batching``: a short last call is filled with the first samples, which are
    then compared twice)."""
    n = len(next(iter(feeds.values())))
    outputs = [o.name for o in model.graph.output]
    quantized = [
        node.output[0] for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.output[0] not in outputs
    ]  # fmt: skip
    session = make_session(model.SerializeToString())
    expanded = expand_qdq(model)
    report = VerifyReport(
        {name: OutputAgreement(name) for name in outputs},
        {name: OutputAgreement(name, end_to_end=None) for name in quantized},
        {}, {}, {}, n,
    )  # fmt: skip
    op_sessions: list[tuple[OpModel, object]] | None = None
    fixed = fixed_batch(model)
    for batch, _ in chunks(feeds, fixed or batch_size, fill=fixed is not None):
        ort = dict(zip(outputs, session.run(outputs, batch), strict=True))
        alone = run_reference(model, batch, rounding=rounding)
        if op_sessions is None:
            integer_nodes = {
                node.name for node in expanded.graph.node if alone.ran_integer(node.name)
            }
            op_sessions = [
                (op, make_session(op.model.SerializeToString()))
                for op in op_models(expanded, integer_nodes)
            ]
        _add_batch(report, ort, alone, _run_op_by_op(op_sessions, batch, alone))
        if emulate_avx2:
            avx2 = run_reference(model, batch, rounding=rounding, emulate_avx2=True)
            _add_saturation(report, avx2, alone)
        report.integer_ops = dict(alone.integer_ops)
        report.float_ops = dict(alone.float_ops)
        report.float_reasons = dict(alone.float_reasons)
    # written by the QuantizeLinear of a float op's output: no integer op to compare
    report.from_float = [name for name, t in report.tensors.items() if not t.op_by_op.values]
    for name in report.from_float:
        del report.tensors[name]
    return report


def _run_op_by_op(
    op_sessions: list[tuple[OpModel, object]],
    batch: Mapping[str, np.ndarray],
    alone: ReferenceRun,
) -> dict[str, np.ndarray]:
    """Each op on the reference's own inputs: ONNX Runtime's kernel against the reference's.
    Returns, per tensor of the full model, ONNX Runtime's value."""
    ints = {**alone.quantized, **alone.int_inputs}
    op_by_op: dict[str, np.ndarray] = {}
    for op, op_session in op_sessions:
        feed = {
            name: batch[name] if name in batch and name not in ints
            else ints[name].q.astype(_NUMPY[ints[name].qp.dtype])
            for name in op.inputs
        }  # fmt: skip
        values = op_session.run(list(op.outputs), feed)  # type: ignore[attr-defined]
        for out, value in zip(op.outputs, values, strict=True):
            op_by_op[op.outputs[out]] = value
    return op_by_op


def _add_batch(
    report: VerifyReport,
    ort: Mapping[str, np.ndarray],
    alone: ReferenceRun,
    op_by_op: Mapping[str, np.ndarray],
) -> None:
    for name, agreement in report.outputs.items():
        mine = alone.integers.get(name)
        agreement.grid = _grid_name(mine)
        assert agreement.end_to_end is not None
        agreement.end_to_end.add(ort[name], alone.outputs[name], mine)
        if name in op_by_op:
            agreement.op_by_op.add(op_by_op[name], alone.outputs[name], mine)
        else:  # written by a float op: no integer kernel to compare, only the end result
            agreement.op_by_op.add(ort[name], alone.outputs[name], mine)
    for name, agreement in report.tensors.items():
        tensor = alone.quantized[name]
        agreement.grid = _grid_name(tensor)
        if name in op_by_op:
            agreement.op_by_op.add(op_by_op[name], tensor.real(), tensor)


def _add_saturation(report: VerifyReport, avx2: ReferenceRun, exact: ReferenceRun) -> None:
    """What emulating AVX2's int16 pair sums changed, per node and per output."""
    for node, (s, t) in avx2.saturated.items():
        before = report.saturation.get(node, (0, 0))
        report.saturation[node] = (before[0] + s, before[1] + t)
    for name in report.outputs:
        effect = report.saturation_effect.setdefault(name, Agreement())
        effect.add(avx2.outputs[name], exact.outputs[name], exact.integers.get(name))
