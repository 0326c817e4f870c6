"""Learned weight rounding where it pays: ``weight_rounding="auto"`` (opt-in: on the two CTC text
readers of the corpus GPTQ did not come closer on held-out samples, and its effect on the
whole corpus as a default is not measured yet).

Issue 14's rule for a model that misses its fidelity target: reach for the methods the best
toolkits use before keeping layers float. GPTQ (``quanta.graph.rounding``) costs a pass over
the calibration samples and one solve per weight, so it is not spent on a model that already
meets every target with nearest rounding. When the fully int8 model misses a target on the
held-out samples, the weights are rounded by GPTQ too, and GPTQ is kept when the worst measure
(the mean cosine, or the caller's metric, and the per-position arg-max agreement) comes closer
to its target, in units of its headroom; otherwise nearest rounding stays. The accuracy-aware
fallback (``quanta.graph.fallback``) then starts from the rounding kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from quanta.graph.apply_qdq import WeightCache
from quanta.graph.measures import Measure
from quanta.runtime import mean_cosine, run_model

__all__ = ["margin", "round_where_it_pays"]


def margin(
    outputs: list[np.ndarray],
    reference: list[np.ndarray],
    target: float,
    metric: Callable[[list[np.ndarray]], float] | None,
    also: Sequence[Measure],
) -> float:
    """The worst measure's distance to its target in units of its headroom (``1 - target``):
    >= 0 when every target is met."""
    main = metric(outputs) if metric is not None else mean_cosine(outputs, reference)
    pairs = [(main, target), *((m.score(outputs, reference), m.target) for m in also)]
    return min((v - t) / max(1.0 - t, 1e-9) for v, t in pairs)


def round_where_it_pays(
    build: Callable[[dict[str, str]], onnx.ModelProto],
    cache: WeightCache,
    learn: Callable[[], int],
    feeds: Mapping[str, np.ndarray],
    reference: list[np.ndarray],
    target: float,
    metric: Callable[[list[np.ndarray]], float] | None,
    also: Sequence[Measure],
    notes: list[str],
) -> bool:
    """GPTQ-rounded weights in ``cache`` if the fully int8 model with nearest rounding misses a
    target on ``feeds`` and GPTQ scores better; returns whether GPTQ was kept.

    Args:
        build: the quantized model with the given nodes kept float, from ``cache``'s weights.
        cache: the int8 weights every build shares; ``learn`` fills it with GPTQ's and returns
            how many weights it rounded.
        feeds: held-out samples; ``reference``: the float model's outputs on them.
        target, metric, also: what the model is judged by (``quanta.graph.fidelity_search``).
    """
    nearest = margin(run_model(build({}), feeds), reference, target, metric, also)
    if nearest >= 0:
        return False
    kept = dict(cache)
    cache.clear()  # NOTE: what the cache derived from nearest weights (bias corrections) goes too
    rounded = learn()
    learned = margin(run_model(build({}), feeds), reference, target, metric, also)
    if rounded and learned > nearest:
        notes.append(
            f"weight rounding: GPTQ on {rounded} weight(s), nearest on the rest (the fully int8 "
            f"model missed its fidelity target with nearest rounding; GPTQ came closer)"
        )
        return True
    cache.clear()
    cache.update(kept)
    return False
