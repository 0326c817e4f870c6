"""Which nodes to keep float, decided by measured output error (accuracy-aware fallback).

Quantizing every node is fastest, but a few layers carry most of the error (in MobileNetV2 the
first convolutions, whose 3x3 depthwise filters and wide-range activations lose the most to
8 bits). Instead of a list of names, quanta measures:

1. the fully quantized model's fidelity on held-out calibration samples (mean cosine similarity
   of each output to the float model's, per sample, and any further measure with its own
   target, such as the per-position arg-max agreement of a class-score sequence,
   ``quanta.graph.measures``); if every target is met, nothing changes;
2. otherwise, for each weighted node (Conv, Gemm, MatMul), its *damage alone*: the loss of
   mean cosine when *only* that node is quantized (its input activation, weights and output),
   all in ONNX Runtime with its real integer kernels. Damage in isolation ranks nodes far
   better than leave-one-out: a tensor stays int8 as long as either its producer or a consumer
   is int8, so keeping one node of a bad region float changes little while the whole region
   stays costly;
3. nodes are then returned to float in order of damage until the target is met (or
   ``max_float`` is reached); the smallest prefix of that order that reaches the best measured
   fidelity is kept.

Every node kept float is reported with the gain that justified it.

Damage alone is a node's cost to the *model being built* (it picks what to keep float); the
per-layer "sensitivity" of ``quanta inspect`` (``quanta.diagnose``) measures an already
quantized model's own grids, one activation tensor at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from quanta.graph.measures import Measure
from quanta.graph.result import FloatKind, FloatReason
from quanta.runtime import mean_cosine, run_model

__all__ = ["FallbackResult", "search_float_nodes"]

RANK_SAMPLES = 8


@dataclass(frozen=True)
class FallbackResult:
    kept_float: dict[str, str]  # node name -> reason
    fidelity_before: float
    fidelity_after: float
    evaluations: int
    limit: int = 0  # at most this many nodes could be kept float
    also_before: dict[str, float] = field(default_factory=dict)  # Measure name -> score
    also_after: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Score:
    """One model's fidelity: the main score and each further measure's."""

    main: float
    also: dict[str, float]

    def margin(self, target: float, also: Sequence[Measure]) -> float:
        """The worst measure's distance to its target, in units of its headroom
        (``1 - target``): >= 0 when every target is met; comparable across measures."""
        pairs = [(self.main, target), *((self.also[m.name], m.target) for m in also)]
        return min((v - t) / max(1.0 - t, 1e-9) for v, t in pairs)


class _Trials:
    """Builds and runs the quantized model with some nodes kept float, and counts the runs."""

    def __init__(
        self,
        build: Callable[[dict[str, str]], onnx.ModelProto],
        feeds: Mapping[str, np.ndarray],
        reference: list[np.ndarray],
        metric: Callable[[list[np.ndarray]], float] | None,
        also: Sequence[Measure] = (),
    ) -> None:
        self.build, self.feeds, self.reference, self.metric = build, feeds, reference, metric
        self.also = also
        # NOTE: ranking nodes needs far fewer samples than judging the result: damage in
        # isolation differs between nodes by orders of magnitude.
        self.rank_feeds = {k: v[:RANK_SAMPLES] for k, v in feeds.items()}
        self.rank_reference = [r[:RANK_SAMPLES] for r in reference]
        self.evaluations = 0

    def score(self, keep_float: dict[str, str]) -> _Score:
        """The model's scores on all samples: ``metric`` (or mean cosine to the reference),
        and each further measure."""
        self.evaluations += 1
        outputs = run_model(self.build(keep_float), self.feeds)
        main = (
            self.metric(outputs)
            if self.metric is not None
            else mean_cosine(outputs, self.reference)
        )
        return _Score(main, {m.name: m.score(outputs, self.reference) for m in self.also})

    def rank_scores(self, keep_float: dict[str, str]) -> _Score:
        """Mean cosine to the reference, and each further measure, on the first
        ``RANK_SAMPLES`` samples."""
        self.evaluations += 1
        outputs = run_model(self.build(keep_float), self.rank_feeds)
        return _Score(
            mean_cosine(outputs, self.rank_reference),
            {m.name: m.score(outputs, self.rank_reference) for m in self.also},
        )


def _damage_alone(
    trials: _Trials,
    candidates: list[str],
    planned: list[str],
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, _Score]:
    """Per candidate, the loss of mean cosine (and of each further measure) when only that
    node is quantized (every other planned node kept float)."""
    damage = {}
    for i, name in enumerate(candidates):
        alone = {other: "" for other in planned if other != name}
        scores = trials.rank_scores(alone)
        damage[name] = _Score(1.0 - scores.main, {k: 1.0 - v for k, v in scores.also.items()})
        if on_step is not None:
            on_step(i + 1, len(candidates))
    return damage


def _ranking(
    damage: Mapping[str, _Score], target: float, also: Sequence[Measure]
) -> dict[str, float]:
    """Per candidate, its worst damage in units of each measure's headroom (``1 - target``):
    a node that changes arg-maxes ranks by that, not by the cosine it barely moves. With the
    cosine alone this orders as the cosine damage does."""
    return {
        name: max(
            [d.main / max(1.0 - target, 1e-9)]
            + [d.also[m.name] / max(1.0 - m.target, 1e-9) for m in also]
        )
        for name, d in damage.items()
    }


def _fallback_order(
    candidates: list[str],
    damage: Mapping[str, float],
    cost: Mapping[str, float] | None,
    limit: int,
) -> list[str]:
    """The ``limit`` candidates worth returning to float first: most damage, or most damage per
    unit of ``cost``."""
    if cost:
        floor = max(min((c for c in cost.values() if c > 0), default=1.0), 1e-6)
        worth = {n: damage[n] / max(cost.get(n, floor), floor) for n in candidates}
        return sorted(candidates, key=lambda n: -worth[n])[:limit]
    return sorted(candidates, key=lambda n: -damage[n])[:limit]


def _best_prefix(
    trials: _Trials, order: list[str], before: _Score, target: float
) -> tuple[_Score, int]:
    """Keep ``order[:k]`` float for k = 1, 2, ... until every target is met; the best scores
    (by the worst measure's margin) and the smallest k that reached them."""
    best, best_k = before, 0
    for k in range(1, len(order) + 1):
        value = trials.score({n: "" for n in order[:k]})
        if value.margin(target, trials.also) > best.margin(target, trials.also):
            best, best_k = value, k
        if value.margin(target, trials.also) >= 0:
            break
    return best, best_k


def _reason(name: str, damage: _Score, cost: Mapping[str, float] | None, where: str) -> str:
    also = "".join(f" and {v:.2%} of its {k}" for k, v in damage.also.items())
    return FloatReason(
        f"kept float: quantizing it alone cost {damage.main:.4f} of the output's mean "
        f"cosine{also} on {where}, among the most of any node"
        + (f" per ms of float time ({cost[name]:.3f} ms)" if cost and name in cost else ""),
        FloatKind.ACCURACY,
    )


def search_float_nodes(
    build: Callable[[dict[str, str]], onnx.ModelProto],
    candidates: list[str],
    planned: list[str],
    feeds: Mapping[str, np.ndarray],
    reference: list[np.ndarray],
    *,
    target: float,
    max_float: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
    metric: Callable[[list[np.ndarray]], float] | None = None,
    where: str = "the held-out calibration samples",
    cost: Mapping[str, float] | None = None,
    also: Sequence[Measure] = (),
) -> FallbackResult:
    """Greedy accuracy-aware fallback.

    Args:
        build: returns the quantized model with the given nodes kept float.
        candidates: node names that may be kept float.
        planned: every node the full quantization makes int8 (to build single-node models).
        feeds: held-out inputs; ``reference``: the float model's outputs on them.
        target: the mean cosine (or ``metric``) to reach.
        max_float: at most this many nodes kept float (default: a quarter of the candidates).
        metric: judges a model's outputs on ``feeds`` against ``target`` (default: their mean
            cosine to ``reference``; e.g. accuracy against labels). Ranking uses the cosine
            and ``also``, each in units of its headroom (``1 - target``).
        where: how the reasons name ``feeds``.
        cost: what keeping each node float costs (e.g. its measured float time, ms); nodes
            are then returned to float in order of damage per cost, not damage alone.
        also: further measures that must each reach their own target too (e.g. the arg-max
            agreement of a class-score sequence); the search stops when all are met, and
            keeps the prefix whose worst measure is closest to (or past) its target.
    """
    trials = _Trials(build, feeds, reference, metric, also)
    limit = max_float if max_float is not None else max(1, len(candidates) // 4)
    before = trials.score({})
    if before.margin(target, also) >= 0 or not candidates:
        return FallbackResult(
            {}, before.main, before.main, trials.evaluations, limit, before.also, before.also
        )
    damage = _damage_alone(trials, candidates, planned, on_step)
    order = _fallback_order(candidates, _ranking(damage, target, also), cost, limit)
    best, best_k = _best_prefix(trials, order, before, target)
    kept = {name: _reason(name, damage[name], cost, where) for name in order[:best_k]}
    return FallbackResult(
        kept, before.main, best.main, trials.evaluations, limit, before.also, best.also
    )
