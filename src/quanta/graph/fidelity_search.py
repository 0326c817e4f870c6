"""The accuracy-aware fallback as static quantization runs it: which fidelity measures a model
is judged by on held-out samples (the mean output cosine, or the caller's ``FidelityGoal``, and
the per-position arg-max agreement of class-score sequences), the search that keeps the
costliest layers float (``quanta.graph.fallback``), and the report of how it fared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import onnx

from quanta.graph.fallback import search_float_nodes
from quanta.graph.measures import Measure, sequence_measure
from quanta.graph.planner import StaticPlan
from quanta.graph.result import FidelityReport
from quanta.graph.twins import Twins
from quanta.runtime import run_model

if TYPE_CHECKING:
    from quanta.graph.static import _Builds as Builds

__all__ = [
    "MAX_SEARCHED_FOR_ALSO",
    "FidelityGoal",
    "further_measures",
    "judged",
    "keep_costly_float",
]

# A further fidelity measure (the arg-max agreement of a class-score sequence) drives the
# fallback search only up to this many candidate layers: the search builds and runs the model
# once per candidate (ddddocr_ocr: 52 layers, about 3 minutes on 2 cores; captcha_crnn: 228
# layers, 46 candidates once twins count as one, quanta.graph.twins).
MAX_SEARCHED_FOR_ALSO = 128


@dataclass(frozen=True)
class FidelityGoal:
    """What "accurate enough" means for the accuracy-aware fallback, when the caller knows
    better than held-out calibration samples: the samples, a metric of the model's outputs on
    them (higher is better), the target, and how to name both in notes."""

    feeds: Mapping[str, np.ndarray]
    metric: Callable[[list[np.ndarray]], float]
    target: float
    measure: str = "mean output cosine to float"
    where: str = "the evaluation samples"
    cost: Mapping[str, float] | None = None  # per node: what keeping it float costs (ms)


def further_measures(
    goal: FidelityGoal | None, prepared: onnx.ModelProto, reference: list[np.ndarray], n: int
) -> list[Measure]:
    """The measures judged beside the mean cosine on held-out samples: the per-position
    arg-max agreement of class-score sequences (``quanta.graph.measures``); none for a
    caller's goal, whose metric is what it asked for."""
    if goal is not None:
        return []
    measure = sequence_measure(prepared, reference, n)
    return [measure] if measure is not None else []


def judged(report: FidelityReport, also: list[Measure], scores: dict[str, float]) -> FidelityReport:
    """``report`` with the further measures' ``scores`` and which targets were missed."""
    missed = [report.measure] if report.achieved < report.target else []
    missed += [m.name for m in also if scores[m.name] < m.target]
    if also:  # NOTE: one further measure exists today: the arg-max agreement
        report = replace(report, agreement=scores[also[0].name], agreement_target=also[0].target)
    return replace(report, met=not missed, missed=", ".join(missed))


def keep_costly_float(
    builds: Builds,
    built: tuple[onnx.ModelProto, StaticPlan, int],
    feeds: Mapping[str, np.ndarray],
    reference: list[np.ndarray],
    target: float,
    goal: FidelityGoal | None,
    on_search: Callable[[int, int], None] | None,
    notes: list[str],
    where: str,
) -> tuple[tuple[onnx.ModelProto, StaticPlan, int], FidelityReport]:
    """The accuracy-aware fallback: ``built`` with the nodes that cost the most fidelity kept
    float until ``target`` is met (``quanta.graph.fallback``), and how it fared."""
    plan = built[1]
    # Every node that computes (not the value movers, which follow their input's grid).
    candidates = [
        n.name for n in builds.prepared.graph.node
        if n.name in plan.plans and plan.plans[n.name].output != "shared"
    ]  # fmt: skip
    n_feed = len(next(iter(feeds.values())))
    measure = goal.measure if goal is not None else "mean output cosine to float"
    also = further_measures(goal, builds.prepared, reference, n_feed)
    # twins (one unrolled recurrent cell's nodes, step after step) are one candidate
    twins = Twins(builds.prepared, candidates)
    # NOTE: the search ranks every candidate by one model build and run each; a further measure
    # that misses on a model of many layers would make it run for half an hour, so beyond
    # MAX_SEARCHED_FOR_ALSO candidates the measure is reported, not chased.
    driving = also if len(twins.candidates) <= MAX_SEARCHED_FOR_ALSO else []
    first = built
    fallback = search_float_nodes(
        lambda extra: builds.model(twins.expand(extra)), twins.candidates,
        twins.planned(list(plan.plans)), feeds, reference,
        target=target, on_step=on_search, max_float=builds.config.max_float,
        metric=goal.metric if goal is not None else None, where=where,
        cost=twins.cost(goal.cost) if goal is not None else None, also=driving,
    )  # fmt: skip
    if fallback.kept_float:
        fallback = replace(fallback, kept_float=twins.expand(fallback.kept_float))
        built = builds.build(fallback.kept_float)
    if also and not driving:
        fallback = replace(
            fallback,
            also_before=_scores(also, first[0], feeds, reference),
            also_after=_scores(also, built[0], feeds, reference),
        )
        notes.append(
            f"{also[0].name} not searched for: {len(twins.candidates)} layers to rank (one model "
            f"build each, at most {MAX_SEARCHED_FOR_ALSO}); --mode auto --eval EVAL.npz "
            "weighs float, dynamic and partly-float variants"
        )
    notes.append(
        f"fidelity on {where} ({measure}): {fallback.fidelity_before:.4f} fully int8"
        + (
            f", {fallback.fidelity_after:.4f} with {len(fallback.kept_float)} node(s) kept "
            f"float (target {target:g}, {fallback.evaluations} evaluations)"
            if fallback.kept_float
            else f" (target {target:g} {_met(fallback.fidelity_before, target)})"
        )
        + "".join(
            f"; {m.name} {fallback.also_before[m.name]:.4f} fully int8"
            + (f", {fallback.also_after[m.name]:.4f} after" if fallback.kept_float else "")
            + f" (target {m.target:.4f})"
            for m in also
        )
    )
    report = FidelityReport(
        target=target,
        achieved=fallback.fidelity_after,
        met=fallback.fidelity_after >= target,
        held_out=n_feed,
        calibrated=0,
        before=fallback.fidelity_before,
        kept_float=len(fallback.kept_float),
        max_float=fallback.limit,
        measure=measure,
    )
    if also:
        report = replace(report, agreement_before=fallback.also_before[also[0].name])
    return built, judged(report, also, fallback.also_after)


def _scores(
    also: list[Measure],
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    reference: list[np.ndarray],
) -> dict[str, float]:
    outputs = run_model(model, feeds)
    return {m.name: m.score(outputs, reference) for m in also}


def _met(score: float, target: float) -> str:
    return "met" if score >= target else "not met"
