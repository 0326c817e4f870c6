"""Static (full-integer) quantization to QDQ: int8 weights and calibrated int8 activations.

The pass plans every node (``quanta.graph.planner``), calibrates the activation tensors the plan
needs in one ONNX Runtime run, then rewrites the graph:

- a Relu/Clip after Conv/Gemm/MatMul/Add is absorbed: the producer's output is quantized with
  the activation's range, whose saturation clamps as the activation did;
- weights become int8 initializers + DequantizeLinear (symmetric, per output channel);
- biases become int32 with scale ``s_in * s_w`` + DequantizeLinear;
- each quantized activation ``T`` gets ``QuantizeLinear -> DequantizeLinear`` right after its
  producer; the producer writes ``T_prequant`` and the DequantizeLinear writes ``T``, so consumers
  and graph outputs keep their names.

ONNX Runtime then fuses the QDQ groups into integer kernels (QLinearConv, QGemm, QLinearAdd,
int8 MaxPool, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx

from quanta.errors import ModelError
from quanta.graph.apply_qdq import WeightCache, apply_qdq
from quanta.graph.bias_correction import MEAN_AXIS
from quanta.graph.calibrate import CalibrationData, collect_statistics
from quanta.graph.choices import (
    AUTO_METHODS,
    FLOAT_COMPUTE,
    activation_qparams,
    best_method,
    fastest_activation_type,
    observer_factory,
)
from quanta.graph.compact import compact_qdq
from quanta.graph.concats import mismatched_concats
from quanta.graph.config import QuantizeConfig
from quanta.graph.dead_zone import floored_grids, range_floors
from quanta.graph.dynamic import dynamic_matmuls
from quanta.graph.equalize import equalize_layers
from quanta.graph.escalation import Build
from quanta.graph.fidelity_search import FidelityGoal, further_measures, judged, keep_costly_float
from quanta.graph.float_compute import prefer_float_compute
from quanta.graph.float_readers import readers_of
from quanta.graph.holdout import HeldOut, hold_out
from quanta.graph.latency import keep_slower_float
from quanta.graph.ops.hard_swish import int8_hard_swish
from quanta.graph.planner import StaticPlan, plan_static
from quanta.graph.prepare import prepare
from quanta.graph.result import FidelityReport, FloatKind, QuantizeResult
from quanta.graph.rounding import learned_rounding
from quanta.graph.rounding_choice import round_where_it_pays
from quanta.graph.storage import store_recurrent_fp16
from quanta.graph.tradeoff import speed_cost_note
from quanta.graph.weight_only import compress_float_weights
from quanta.quant import Observer
from quanta.runtime import mean_cosine, run_model
from quanta.runtime.machine import int8_pairs_saturate

# AUTO_METHODS, FLOAT_COMPUTE, observer_factory and mismatched_concats moved to
# quanta.graph.choices / quanta.graph.concats; still importable from here.
__all__ = [
    "AUTO_METHODS",
    "FLOAT_COMPUTE",
    "FidelityGoal",
    "apply_qdq",
    "mismatched_concats",
    "observer_factory",
    "quantize_static",
]


def quantize_static(
    model: onnx.ModelProto,
    data: CalibrationData,
    config: QuantizeConfig | None = None,
    *,
    on_batch: Callable[[int, int], None] | None = None,
    on_search: Callable[[int, int], None] | None = None,
    goal: FidelityGoal | None = None,
    keep_float: Mapping[str, str] | None = None,
) -> QuantizeResult:
    """Quantize ``model`` to int8 QDQ, calibrating activation ranges on ``data``.

    With ``config.min_fidelity`` set, the nodes whose quantization costs the most output
    fidelity are kept float until the target is met (``quanta.graph.fallback``).

    Args:
        model: a float ONNX model (opset >= 13; older ones are upgraded by ``load_model``).
        data: calibration samples, one array per model input.
        config: options; ``per_channel`` and ``activation_type`` apply.
        on_batch: progress callback ``(batches_done, total)`` during calibration.
        goal: judge fidelity on these samples with this metric and target instead of
            ``config.min_fidelity`` on held-out calibration samples (``quanta.graph.auto``).
        keep_float: nodes to leave float whatever they cost, name -> reason.

    Returns:
        The quantized model and the nodes left float with the reason for each.
    """
    config = config or QuantizeConfig()
    float_model, model = model, prepare(model)
    equalized = equalize_layers(model) if config.equalize else 0
    keep_float = dict(keep_float or {})
    target = goal.target if goal is not None else config.min_fidelity
    # fidelity is judged on samples calibration never saw: the goal's, or held-out ones
    split = (
        hold_out(data, config.holdout_samples)
        if goal is None and (config.method == "auto" or target is not None)
        else None
    )
    calibration = _calibrate(
        model, split.calibration if split else data, config, goal, keep_float, on_batch
    )
    builds = _Builds(model, calibration, config)
    notes = _weight_range_notes(config, builds.reduced)
    if equalized:
        notes.append(f"cross-layer equalization: {equalized} convolution pair(s) equalized")
    calibrated = split.calibration if split else data
    if config.weight_rounding == "gptq":
        _learn_rounding(builds, calibrated, notes)
    if config.activation_type == "auto":
        builds.activation_type = fastest_activation_type(builds.build, notes)
    feeds = dict(goal.feeds) if goal is not None else split.feeds if split else {}
    reference = run_model(model, feeds) if feeds else []
    where = goal.where if goal is not None else split.where() if split else ""
    if config.method == "auto":
        builds.method = best_method(builds.build, feeds, reference, notes, where)
    if config.weight_rounding == "auto" and target is not None and feeds:
        round_where_it_pays(
            builds.model, builds.weights, lambda: _rounded(builds, calibrated), feeds, reference,
            target, goal.metric if goal is not None else None,
            further_measures(goal, model, reference, len(next(iter(feeds.values())))), notes,
        )  # fmt: skip
    built = fully_int8 = builds.build({})
    report = None
    if target is not None:
        built, report = keep_costly_float(
            builds, built, feeds, reference, target, goal, on_search, notes, where
        )
        report = _counted(report, split, data)
        if not report.met:  # int8-stored LSTM/GRU weights may cost it (graph/storage.py)
            scored = report
            built, report = store_recurrent_fp16(
                builds, built, scored, float_model.ByteSize(), notes,
                lambda b: _rescored(scored, b, feeds, reference, goal, builds.prepared),
            )  # fmt: skip
    timed, one = False, data.head(model, 1)  # one sample, for the batch-1 timings
    if report is not None and goal is None and config.latency_check:  # last resort for answers
        scored = report
        variant = prefer_float_compute(
            builds.build, built, scored, list(built[1].plans), float_model, one,
            lambda b: _rescored(scored, b, feeds, reference, goal, builds.prepared), notes,
        )  # fmt: skip
        if variant is not None:
            (built, report), timed = variant, True
    if config.latency_check and not timed:  # never slower than float at batch 1 (graph/latency)

        def dynamic(extra: dict[str, str], names: list[str]) -> Build | None:
            """Those ``names`` in dynamic int8, where the answers still meet the target."""
            b = builds.build(extra, dynamic=names)
            if not any(n.op_type == "MatMulInteger" for n in b[0].graph.node):
                return None
            ok = report is None or _rescored(report, b, feeds, reference, goal, builds.prepared).met
            return b if ok else None

        fastest = keep_slower_float(
            float_model, model, builds.build, built, list(built[1].plans), one, notes,
            dynamic=dynamic,
        )  # fmt: skip
        if report is not None and fastest is not built:  # the report scores the model written
            report = _rescored(report, fastest, feeds, reference, goal, builds.prepared)
        built = fastest
        if report is not None and goal is None:  # say what the answers' fallback cost in speed
            n_kept = sum(f.kind is FloatKind.ACCURACY for f in built[1].float_nodes)
            cost = speed_cost_note(float_model, built[0], fully_int8[0], one, report, n_kept)
            notes.extend([cost] if cost else [])
    quantized, plan, corrected = built
    if config.compact:
        compact_qdq(quantized)
    onnx.checker.check_model(quantized)
    # what calibration measured, whichever build was kept (a float-compute one calibrates none)
    notes[:0] = _calibration_notes(builds, calibration.plan, corrected, split, data)
    return QuantizeResult(quantized, plan.float_nodes, notes, report)


def _counted(
    report: FidelityReport, split: HeldOut | None, data: CalibrationData
) -> FidelityReport:
    """The fidelity report with how many samples calibrated and how many were held out."""
    if split is not None:
        return replace(report, calibrated=split.calibrated, held_out=split.held_out)
    return replace(report, calibrated=data.count)


def _rescored(
    report: FidelityReport,
    built: tuple[onnx.ModelProto, StaticPlan, int],
    feeds: Mapping[str, np.ndarray],
    reference: list[np.ndarray],
    goal: FidelityGoal | None,
    prepared: onnx.ModelProto,
) -> FidelityReport:
    """``report`` for ``built``, which the latency check chose over the model it scored."""
    outputs = run_model(built[0], feeds)
    score = goal.metric(outputs) if goal is not None else mean_cosine(outputs, reference)
    chosen = (FloatKind.ACCURACY, FloatKind.SPEED)
    n_float = sum(f.kind in chosen for f in built[1].float_nodes)
    also = further_measures(goal, prepared, reference, report.held_out)
    scores = {m.name: m.score(outputs, reference) for m in also}
    return judged(replace(report, achieved=score, kept_float=n_float), also, scores)


def _calibration_notes(
    builds: _Builds,
    plan: StaticPlan,
    corrected: int,
    split: HeldOut | None,
    data: CalibrationData,
) -> list[str]:
    """The first notes: what calibrated on which samples, and the bias correction."""
    calibrated_on = split.describe() if split else f"calibrated on {data.count} samples"
    notes = [
        f"{calibrated_on}; {len(plan.calibrated_tensors())} activation tensors calibrated "
        f"({builds.method}, {builds.activation_type} activations)"
    ]
    if corrected:
        notes.append(f"bias correction applied to {corrected} layers")
    return notes


@dataclass(frozen=True)
class _Calibration:
    """What one calibration run settles: the plan (after the nodes kept float), every observed
    tensor's range, why each excluded node is float, and weighted nodes' input channel means."""

    plan: StaticPlan
    ranges: dict[str, Observer]
    exclude: dict[str, str]
    input_means: dict[str, np.ndarray]


def _calibrate(
    model: onnx.ModelProto,
    data: CalibrationData,
    config: QuantizeConfig,
    goal: FidelityGoal | None,
    keep_float: dict[str, str],
    on_batch: Callable[[int, int], None] | None,
) -> _Calibration:
    plan = plan_static(model, exclude=dict(keep_float))
    if not plan.plans:
        raise ModelError("no node of this model can be quantized (no Conv, Gemm or MatMul found)")
    mean_axes = (
        {
            node.input[0]: MEAN_AXIS[node.op_type]
            for node in model.graph.node
            if node.name in plan.plans
            and node.op_type in MEAN_AXIS
            and plan.plans[node.name].weights
        }
        if config.bias_correction
        else {}
    )
    # a search for nodes to keep float needs the ranges every other plan could ask for; so does
    # a planned Concat: ``mismatched_concats`` may keep it and its readers float after
    # calibration, and a mover among those readers then needs a range of its own
    replans = config.min_fidelity is not None or goal is not None or keep_float
    has_concat = any(n.op_type == "Concat" and n.name in plan.plans for n in model.graph.node)
    observed = (
        plan.possible_sources(model)
        if replans or config.latency_check or has_concat
        else plan.calibrated_tensors()
    )
    ranges, means = collect_statistics(
        model, observed, data, channel_means=mean_axes,
        make_observer=observer_factory(config), on_batch=on_batch, workers=config.workers,
    )  # fmt: skip
    exclude = mismatched_concats(model, plan, ranges)
    exclude.update(keep_float)
    if exclude:
        exclude.update(readers_of(model, plan, exclude))
        plan = plan_static(model, exclude=exclude)
    input_means = {name: obs.mean() for name, obs in means.items()}
    return _Calibration(plan, ranges, exclude, input_means)


def _for_answers(keep_float: Mapping[str, str]) -> set[str]:
    """The nodes kept float for anything but speed: asked for, or tried and kept for accuracy
    (the search passes plain-text reasons)."""
    return {
        name
        for name, reason in keep_float.items()
        if getattr(reason, "kind", None) is not FloatKind.SPEED
    }


class _Builds:
    """Builds of one prepared model from one calibration, differing only in the nodes kept float
    and the range method / activation type; "auto" choices start from min-max / int8 and are
    settled by measuring builds. Weights are quantized once and shared (they are the same in
    every build)."""

    def __init__(
        self, prepared: onnx.ModelProto, calibration: _Calibration, config: QuantizeConfig
    ) -> None:
        self.prepared = prepared
        self.calibration = calibration
        self.config = config
        self.method: str = "minmax" if config.method == "auto" else config.method
        self.activation_type: str = (
            "int8" if config.activation_type == "auto" else config.activation_type
        )
        self.reduced = config.weight_range == "reduced" or (
            config.weight_range == "auto" and int8_pairs_saturate()
        )
        self.weights: WeightCache = {}
        self.fp16_weights: frozenset[str] = frozenset()  # stored float16 (graph/storage.py)
        self.floors = range_floors(prepared)  # no grid points where readers are flat

    def build(
        self,
        extra: Mapping[str, str],
        *,
        method: str | None = None,
        activation_type: str | None = None,
        dynamic: Collection[str] = (),
    ) -> tuple[onnx.ModelProto, StaticPlan, int]:
        """The quantized model with ``extra`` nodes kept float too, its plan, and how many
        biases were corrected; the ``dynamic`` ones of them that are Gemm/MatMul run as
        dynamic int8 (``quanta.graph.dynamic.dynamic_matmuls``)."""
        cal = self.calibration
        out = onnx.ModelProto()
        out.CopyFrom(self.prepared)
        kept = {**cal.exclude, **extra}
        plan = plan_static(out, exclude=kept) if extra else cal.plan
        qp = {
            t: activation_qparams(
                cal.ranges[src], activation_type or self.activation_type, method or self.method,
                self.config.percentile,
            )
            for t, src in plan.source.items()
        }  # fmt: skip
        qp = floored_grids(qp, plan.source, self.floors)
        corrected = apply_qdq(
            out, plan, qp, per_channel=self.config.per_channel, input_means=cal.input_means,
            weight_cache=self.weights, reduced_weights=self.reduced,
        )  # fmt: skip
        if (activation_type or self.activation_type) == "uint8":
            int8_hard_swish(out)  # HardSwish on QLinearAdd + QLinearMul (graph/ops/hard_swish.py)
        if dynamic:  # no longer float: out of the plan's float nodes
            done = set(dynamic_matmuls(out, dynamic, self.config.per_channel, self.reduced))
            plan = replace(plan, float_nodes=[f for f in plan.float_nodes if f.name not in done])
        # nodes that compute in float still store int8 weights (what the search measures ships)
        compress_float_weights(
            out, per_channel=self.config.per_channel, input_means=cal.input_means,
            exact=_for_answers(kept), fp16=self.fp16_weights,
        )  # fmt: skip
        return out, plan, corrected

    def model(self, extra: dict[str, str]) -> onnx.ModelProto:
        return self.build(extra)[0]


def _rounded(builds: _Builds, data: CalibrationData) -> int:
    """Round the weights to keep each layer's output on ``data`` (``quanta.graph.rounding``)
    into the cache every build shares; how many weights were rounded."""
    return learned_rounding(
        builds.prepared, builds.calibration.plan, data, builds.weights,
        per_channel=builds.config.per_channel, reduced=builds.reduced,
    )  # fmt: skip


def _learn_rounding(builds: _Builds, data: CalibrationData, notes: list[str]) -> None:
    """GPTQ before any build reads the weights: every build then shares these int8 values."""
    rounded = _rounded(builds, data)
    notes.append(f"weight rounding: GPTQ on {rounded} weight(s), nearest on the rest")


def _weight_range_notes(config: QuantizeConfig, reduced: bool) -> list[str]:
    if not reduced:
        return []
    why = (
        "--weight-range reduced"
        if config.weight_range == "reduced"
        else "this CPU has AVX2 but no VNNI, where ONNX Runtime's u8 x s8 kernels add pairs of "
        "products in saturating int16 (full-range weights could overflow it)"
    )
    return [f"weights in 7 bits ([-64, 64]): {why}"]
