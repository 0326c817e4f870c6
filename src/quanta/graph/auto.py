"""``--mode auto``: the fastest model that meets an accuracy target, measured on this machine.

Quantizers usually stop at "every layer int8, unless accuracy says otherwise". Whether int8 is
*faster* depends on the layer and the CPU: a 3-channel first convolution or a depthwise one at
high resolution can run slower in ONNX Runtime's int8 kernels than in its float (NCHWc) ones,
and every switch between int8 and float costs a conversion. So ``auto`` measures:

1. candidates: the float model; float compute with int8-stored weights (``weight-only``);
   ``dynamic``; full static int8; static int8 with the layers that hurt the target most kept
   float, chosen by damage per millisecond of float time (accuracy-aware, cost-aware); and that
   model again with every layer whose int8 kernel ONNX Runtime's profiler measured slower than
   its float kernel kept float too (latency-aware);
2. each candidate's score on the evaluation data (top-1 accuracy against labels, or the mean
   cosine similarity of its outputs to the float model's) against the target;
3. each candidate's batch-1 latency, interleaved in rounds so that all see the same machine;
4. the fastest candidate that meets the target. The float model always meets it, so the result
   is never slower than float (within the measurement's noise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import partial

import numpy as np
import onnx

from quanta.errors import InputError, ModelError
from quanta.graph.calibrate import CalibrationData
from quanta.graph.config import QuantizeConfig
from quanta.graph.dynamic import quantize_dynamic
from quanta.graph.latency import profile_float_int8, slower_nodes
from quanta.graph.prepare import prepare
from quanta.graph.result import FloatKind, FloatNode, QuantizeResult
from quanta.graph.static import FidelityGoal, quantize_static
from quanta.graph.weight_only import compress_float_weights
from quanta.runtime import interleaved_latency, make_session, mean_cosine, run_model

__all__ = ["AutoResult", "AutoTarget", "Candidate", "CandidateKind", "quantize_auto"]


@dataclass(frozen=True)
class AutoTarget:
    """Exactly one of: the accuracy drop allowed (percentage points, needs labels), or the
    minimum mean cosine similarity of the outputs to the float model's."""

    max_accuracy_drop: float | None = None
    min_fidelity: float | None = None

    def __post_init__(self) -> None:
        if (self.max_accuracy_drop is None) == (self.min_fidelity is None):
            raise InputError("--mode auto takes one of --max-accuracy-drop PP or --min-fidelity F")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            raise InputError(
                f"--max-accuracy-drop must be in [0, 100] percentage points, got "
                f"{self.max_accuracy_drop}"
            )
        if self.min_fidelity is not None and not 0 < self.min_fidelity <= 1:
            raise InputError(f"--min-fidelity must be in (0, 1], got {self.min_fidelity}")


class CandidateKind(Enum):
    """The variants ``auto`` weighs; each value is the name notes, the CLI and JSON show."""

    FLOAT = "float"
    WEIGHT_ONLY = "weight-only"
    DYNAMIC = "dynamic"
    STATIC_ALL = "static (all int8)"
    STATIC_ACCURACY = "static (accuracy-aware)"
    STATIC_LATENCY = "static (latency-aware)"

    @property
    def label(self) -> str:
        """The candidate's display name (the one place it is spelled)."""
        return self.value


@dataclass
class Candidate:
    kind: CandidateKind
    model: onnx.ModelProto
    score: float = float("nan")
    meets: bool = False
    latency_ms: float = float("nan")
    detail: str = ""

    @property
    def name(self) -> str:
        return self.kind.label

    @property
    def size_bytes(self) -> int:
        return self.model.ByteSize()


@dataclass
class AutoResult(QuantizeResult):
    candidates: list[Candidate] = field(default_factory=list)
    chosen_kind: CandidateKind = CandidateKind.FLOAT
    measure: str = ""
    target: float = float("nan")

    @property
    def chosen(self) -> str:
        """The chosen candidate's name."""
        return self.chosen_kind.label


@dataclass(frozen=True)
class _Goal:
    """The target as the candidates are scored against it: ``metric`` of a model's outputs on
    the evaluation samples (higher is better) must reach ``value``."""

    value: float
    measure: str
    metric: Callable[[list[np.ndarray]], float]
    where: str


def _accuracy(outputs: list[np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(outputs[0]).argmax(axis=-1) == labels))


def _measure_latency(
    candidates: list[Candidate], feeds: Mapping[str, np.ndarray], budget_s: float
) -> None:
    sessions = [make_session(c.model.SerializeToString()) for c in candidates]
    one = {k: np.asarray(v)[:1] for k, v in feeds.items()}
    for c, lat in zip(
        candidates,
        interleaved_latency(sessions, one, 1, budget_s=budget_s * len(sessions)),
        strict=True,
    ):
        c.latency_ms = lat.p50_ms


def quantize_auto(
    model: onnx.ModelProto,
    data: CalibrationData,
    eval_inputs: Mapping[str, np.ndarray],
    target: AutoTarget,
    *,
    labels: np.ndarray | None = None,
    config: QuantizeConfig | None = None,
    on_step: Callable[[str], None] | None = None,
    latency_budget_s: float = 1.5,
) -> AutoResult:
    """Return the fastest candidate meeting ``target`` on ``eval_inputs`` (see module doc).

    ``latency_budget_s``: seconds of timing per candidate (more: steadier medians).
    """
    # auto weighs the latency-aware candidate itself: its static builds skip static's check
    config = dataclasses.replace(config or QuantizeConfig(), latency_check=False)
    step = on_step or (lambda _msg: None)
    n_eval = len(next(iter(eval_inputs.values())))
    goal = _goal(target, labels, run_model(model, eval_inputs), f"{n_eval} evaluation samples")
    notes: list[str] = []
    prepared = prepare(model)
    candidates = _float_side_candidates(model, prepared, config, notes, step)

    step("static int8, every layer")
    static_config = dataclasses.replace(config, mode="static", min_fidelity=None)
    full = quantize_static(model, data, static_config)
    candidates.append(Candidate(CandidateKind.STATIC_ALL, full.model, detail="every layer int8"))
    candidates[-1].score = goal.metric(run_model(full.model, eval_inputs))

    # per-node time of the float and the all-int8 model, from ONNX Runtime's profiler
    step("profiling float and int8 kernels")
    float_ms, int8_ms = profile_float_int8(prepared, full.model, eval_inputs)
    slower: dict[str, str] = dict(slower_nodes(float_ms, int8_ms))
    accurate: QuantizeResult = full
    if candidates[-1].score < goal.value:
        step("static int8, keeping the costliest layers float")
        cost = {n: max(ms - int8_ms.get(n, 0.0), 0.0) for n, ms in float_ms.items()}
        accurate = _accuracy_aware(model, data, config, goal, eval_inputs, cost)
        candidates.append(
            Candidate(
                CandidateKind.STATIC_ACCURACY, accurate.model,
                detail=f"{len(_searched(accurate))} layer(s) float",
            )
        )  # fmt: skip
    if slower:
        step("static int8 without the layers int8 makes slower")
        fast = _latency_aware(model, data, static_config, _searched(accurate), slower, notes)
        if fast is not None:
            candidates.append(fast)
    else:
        notes.append("no layer's int8 kernel was measurably slower than its float kernel here")

    chosen = _choose(candidates, goal, eval_inputs, latency_budget_s, notes, step)
    return AutoResult(
        chosen.model, _float_nodes(chosen.kind, full, accurate, slower, prepared), notes,
        candidates=candidates, chosen_kind=chosen.kind, measure=goal.measure, target=goal.value,
    )  # fmt: skip


def _goal(
    target: AutoTarget, labels: np.ndarray | None, reference: list[np.ndarray], where: str
) -> _Goal:
    """``target`` as a metric and the value it must reach (accuracy: the float model's minus
    the allowed drop) on ``where``."""
    if target.max_accuracy_drop is not None:
        if labels is None:
            raise InputError(
                "--max-accuracy-drop needs labels in the evaluation data (an array 'labels'); "
                "without them use --min-fidelity"
            )
        labels = np.asarray(labels)
        value = _accuracy(reference, labels) - target.max_accuracy_drop / 100.0
        return _Goal(value, "top-1 accuracy", partial(_accuracy, labels=labels), where)
    assert target.min_fidelity is not None
    return _Goal(
        target.min_fidelity, "mean output cosine to float",
        partial(mean_cosine, reference=reference), where,
    )  # fmt: skip


def _float_side_candidates(
    model: onnx.ModelProto,
    prepared: onnx.ModelProto,
    config: QuantizeConfig,
    notes: list[str],
    step: Callable[[str], None],
) -> list[Candidate]:
    """The float model, int8-stored weights computed in float, and dynamic int8."""
    candidates = [Candidate(CandidateKind.FLOAT, model, detail="the float model as given")]
    step("weight-only int8 storage")
    weight_only = onnx.ModelProto()
    weight_only.CopyFrom(prepared)
    if compress_float_weights(weight_only, per_channel=config.per_channel):
        candidates.append(
            Candidate(
                CandidateKind.WEIGHT_ONLY, weight_only, detail="float compute, int8-stored weights"
            )
        )
    step("dynamic int8")
    try:
        dyn = quantize_dynamic(model, dataclasses.replace(config, mode="dynamic"))
        candidates.append(Candidate(CandidateKind.DYNAMIC, dyn.model, detail="; ".join(dyn.notes)))
    except ModelError as exc:
        notes.append(f"{CandidateKind.DYNAMIC.label}: not a candidate ({exc})")
    return candidates


def _searched(result: QuantizeResult) -> dict[str, str]:
    """The nodes the accuracy-aware search kept float, with the reason."""
    return {f.name: f.reason for f in result.float_nodes if f.kind is FloatKind.ACCURACY}


def _accuracy_aware(
    model: onnx.ModelProto,
    data: CalibrationData,
    config: QuantizeConfig,
    goal: _Goal,
    eval_inputs: Mapping[str, np.ndarray],
    cost: Mapping[str, float],
) -> QuantizeResult:
    """Static int8 with the layers that hurt ``goal`` most per millisecond kept float."""
    fidelity = FidelityGoal(
        eval_inputs, goal.metric, goal.value, measure=goal.measure, where=goal.where, cost=cost
    )
    return quantize_static(model, data, dataclasses.replace(config, mode="static"), goal=fidelity)


def _latency_aware(
    model: onnx.ModelProto,
    data: CalibrationData,
    static_config: QuantizeConfig,
    kept: dict[str, str],
    slower: dict[str, str],
    notes: list[str],
) -> Candidate | None:
    """Static int8 with the accuracy-aware model's float layers and those slower in int8 kept
    float; None (with a note) when nothing is left to quantize."""
    try:
        fast = quantize_static(model, data, static_config, keep_float={**kept, **slower})
    except ModelError as exc:  # e.g. every layer is slower in int8
        notes.append(f"{CandidateKind.STATIC_LATENCY.label}: not a candidate ({exc})")
        return None
    return Candidate(
        CandidateKind.STATIC_LATENCY, fast.model,
        detail=f"{len(kept)} layer(s) float for accuracy, {len(slower)} for speed",
    )  # fmt: skip


def _choose(
    candidates: list[Candidate],
    goal: _Goal,
    eval_inputs: Mapping[str, np.ndarray],
    latency_budget_s: float,
    notes: list[str],
    step: Callable[[str], None],
) -> Candidate:
    """Score and time every candidate; the fastest that meets the goal (ties: the smaller)."""
    step("scoring every candidate")
    for c in candidates:
        if np.isnan(c.score):
            c.score = goal.metric(run_model(c.model, eval_inputs))
        c.meets = c.score >= goal.value - 1e-12
    step("timing every candidate (batch 1, interleaved)")
    _measure_latency(candidates, eval_inputs, latency_budget_s)
    feasible = _dominant(c for c in candidates if c.meets)
    chosen = min(feasible, key=lambda c: (c.latency_ms, c.size_bytes))
    notes.append(
        f"target: {goal.measure} >= {goal.value:.4f} on {goal.where}; chose {chosen.name!r}: the "
        f"fastest candidate that meets it ({chosen.latency_ms:.3f} ms at batch 1)"
    )
    for c in candidates:
        notes.append(
            f"  {c.name}: {goal.measure} {c.score:.4f} ({'meets' if c.meets else 'misses'} the "
            f"target), {c.latency_ms:.3f} ms, {c.size_bytes / 1e6:.2f} MB — {c.detail}"
        )
    return chosen


def _dominant(feasible: Iterable[Candidate]) -> list[Candidate]:
    """``feasible`` without the float model where weight-only storage meets the goal too: ONNX
    Runtime folds its decoders into float constants at session start, so it runs the float
    model's own kernels from a quarter of the bytes, and a timing difference between the two is
    noise (on a 0.5 ms OCR classifier the float model won by that noise, and auto wrote a file
    no smaller than the one it was given)."""
    feasible = list(feasible)
    if any(c.kind is CandidateKind.WEIGHT_ONLY for c in feasible):
        return [c for c in feasible if c.kind is not CandidateKind.FLOAT]
    return feasible


def _float_nodes(
    kind: CandidateKind,
    full: QuantizeResult,
    accurate: QuantizeResult,
    slower: Mapping[str, str],
    prepared: onnx.ModelProto,
) -> list[FloatNode]:
    """The nodes the chosen candidate leaves float (none reported for a non-static one)."""
    if kind is CandidateKind.STATIC_ALL:
        return full.float_nodes
    if kind is CandidateKind.STATIC_ACCURACY:
        return accurate.float_nodes
    if kind is CandidateKind.STATIC_LATENCY:
        reasons = {**{f.name: f.reason for f in accurate.float_nodes}, **slower}
        return [
            FloatNode(n, next(x.op_type for x in prepared.graph.node if x.name == n), why)
            for n, why in reasons.items()
        ]
    return []
