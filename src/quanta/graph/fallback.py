"""Which nodes to keep float, decided by measured output error (accuracy-aware fallback).

Quantizing every node is fastest, but a few layers carry most of the error (in MobileNetV2 the
first convolutions, whose 3x3 depthwise filters and wide-range activations lose the most to
8 bits). Instead of a list of names, quanta measures:

1. the fully quantized model's fidelity on held-out calibration samples (mean cosine similarity
   of each output to the float model's, per sample); if it meets the target, nothing changes;
2. otherwise, for each weighted node (Conv, Gemm, MatMul), the damage when *only* that node is
   quantized (its input activation, weights and output), all in ONNX Runtime with its real
   integer kernels. Damage in isolation ranks nodes far better than leave-one-out: a tensor
   stays int8 as long as either its producer or a consumer is int8, so keeping one node of a
   bad region float changes little while the whole region stays costly;
3. nodes are then returned to float in order of damage until the target is met (or
   ``max_float`` is reached); the smallest prefix of that order that reaches the best measured
   fidelity is kept.

Every node kept float is reported with the gain that justified it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from quanta.runtime import mean_cosine, run_model

__all__ = ["FallbackResult", "search_float_nodes"]

RANK_SAMPLES = 8


@dataclass(frozen=True)
class FallbackResult:
    kept_float: dict[str, str]  # node name -> reason
    fidelity_before: float
    fidelity_after: float
    evaluations: int


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
) -> FallbackResult:
    """Greedy accuracy-aware fallback.

    Args:
        build: returns the quantized model with the given nodes kept float.
        candidates: node names that may be kept float.
        planned: every node the full quantization makes int8 (to build single-node models).
        feeds: held-out inputs; ``reference``: the float model's outputs on them.
        target: the mean cosine to reach.
        max_float: at most this many nodes kept float (default: a quarter of the candidates).
        metric: judges a model's outputs on ``feeds`` against ``target`` (default: their mean
            cosine to ``reference``; e.g. accuracy against labels). Ranking always uses cosine.
        where: how the reasons name ``feeds``.
        cost: what keeping each node float costs (e.g. its measured float time, ms); nodes
            are then returned to float in order of damage per cost, not damage alone.
    """
    evaluations = 0
    # NOTE: ranking nodes needs far fewer samples than judging the result: damage in isolation
    # differs between nodes by orders of magnitude.
    rank_feeds = {k: v[:RANK_SAMPLES] for k, v in feeds.items()}
    rank_reference = [r[:RANK_SAMPLES] for r in reference]

    def score(exclude: dict[str, str], ranking: bool = False) -> float:
        nonlocal evaluations
        evaluations += 1
        if ranking:
            return mean_cosine(run_model(build(exclude), rank_feeds), rank_reference)
        outputs = run_model(build(exclude), feeds)
        return metric(outputs) if metric is not None else mean_cosine(outputs, reference)

    before = score({})
    if before >= target or not candidates:
        return FallbackResult({}, before, before, evaluations)
    limit = max_float if max_float is not None else max(1, len(candidates) // 4)
    damage = {}
    for i, name in enumerate(candidates):
        alone = {other: "" for other in planned if other != name}
        damage[name] = 1.0 - score(alone, ranking=True)
        if on_step is not None:
            on_step(i + 1, len(candidates))
    if cost:
        floor = max(min((c for c in cost.values() if c > 0), default=1.0), 1e-6)
        worth = {n: damage[n] / max(cost.get(n, floor), floor) for n in candidates}
        order = sorted(candidates, key=lambda n: -worth[n])[:limit]
    else:
        order = sorted(candidates, key=lambda n: -damage[n])[:limit]
    best, best_k = before, 0
    for k in range(1, len(order) + 1):
        value = score({n: "" for n in order[:k]})
        if value > best:
            best, best_k = value, k
        if value >= target:
            break
    kept = {
        name: (
            f"kept float: quantizing it alone cost {damage[name]:.4f} of the output's mean "
            f"cosine on {where}, among the most of any node"
            + (f" per ms of float time ({cost[name]:.3f} ms)" if cost and name in cost else "")
        )
        for name in order[:best_k]
    }
    return FallbackResult(kept, before, best, evaluations)
