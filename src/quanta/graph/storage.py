"""Float16 storage for recurrent weights when int8 storage costs the fidelity target.

An LSTM or GRU computes in float in static mode (quanta has no integer plan for it and ONNX
Runtime no QDQ kernel), so storing its ``W`` and ``R`` as int8 (``quanta.graph.weight_only``)
buys file size only, and its rounding error runs through every step of the sequence. When the
fidelity target is still missed after the accuracy-aware fallback, those weights are stored as
float16 instead (two bytes a weight, relative error below 2⁻¹¹), smallest first, as long as the
file stays at least ``SIZE_FLOOR`` times smaller than the float model; the rebuild is kept only
when it scores better on held-out samples.

lac_gru (Baidu LAC: an embedding table of 29.8 MB, two bidirectional GRUs of 2.0 MB, a head):
int8 GRU weights alone change the emission scores by 0.027 RMS, float16 ones by 0.0008; with
every weight int8 the CRF's tag sequence changes on 16 of 192 evaluation sentences, with the
GRUs' weights float16 on 10 (and on 13 of all 288 sentences where int8 changes 22), at 3.66x.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import onnx

from quanta.graph.planner import StaticPlan
from quanta.graph.result import FidelityReport, FloatKind
from quanta.graph.weight_only import float_weight_slots

if TYPE_CHECKING:
    from quanta.graph.static import _Builds as Builds

__all__ = ["RECURRENT", "SIZE_FLOOR", "store_recurrent_fp16"]

Build = tuple[onnx.ModelProto, StaticPlan, int]

RECURRENT = ("LSTM", "GRU")
# the file stays at least this many times smaller than float: int8's four, less what scales,
# biases and the float leftovers of real models take
SIZE_FLOOR = 3.5


def store_recurrent_fp16(
    builds: Builds,
    built: Build,
    report: FidelityReport,
    float_bytes: int,
    notes: list[str],
    rescore: Callable[[Build], FidelityReport],
) -> tuple[Build, FidelityReport]:
    """``built`` with its recurrent weights stored float16 where that fits the size floor and
    scores better than ``report`` (``rescore``: the report of a rebuild on the same held-out
    samples); otherwise ``built`` and ``report`` unchanged."""
    sizes = float_weight_slots(builds.prepared, RECURRENT)
    budget = float_bytes / SIZE_FLOOR - built[0].ByteSize()
    chosen = []
    for name, count in sorted(sizes.items(), key=lambda kv: (kv[1], kv[0])):
        if count > budget:  # float16 takes one byte a weight more than int8
            break
        chosen.append(name)
        budget -= count
    if not chosen:
        return built, report
    builds.fp16_weights = frozenset(chosen)
    kept = {f.name: f.reason for f in built[1].float_nodes if f.kind is FloatKind.ACCURACY}
    rebuilt = builds.build(kept)
    size = rebuilt[0].ByteSize()
    after = rescore(rebuilt) if size * SIZE_FLOOR <= float_bytes else None
    if after is None or not _better(after, report):
        builds.fp16_weights = frozenset()
        reading = f"{_reading(after)}, not better" if after else "over the size floor"
        notes.append(
            f"{len(chosen)} recurrent weight(s) stored float16 measured {reading} than int8 "
            f"({_reading(report)}): kept int8"
        )
        return built, report
    notes.append(
        f"{len(chosen)} recurrent weight(s) (LSTM/GRU, which compute in float) stored float16, "
        f"not int8, as the fidelity target was missed: {_reading(report)} -> {_reading(after)}; "
        f"the file stays {float_bytes / size:.2f}x smaller than float (at least {SIZE_FLOOR:g}x)"
    )
    return rebuilt, after


def _better(new: FidelityReport, old: FidelityReport) -> bool:
    """Every target met, or every measure that missed better or equal and one better, with no
    target that was met missed now."""
    if new.met:
        return True
    pairs = [(new.achieved, old.achieved, old.target)]
    if new.agreement is not None and old.agreement is not None:
        pairs.append((new.agreement, old.agreement, old.agreement_target or 0.0))
    missed = [(a, b) for a, b, target in pairs if b < target]
    if any(a < target <= b for a, b, target in pairs) or not missed:
        return False
    return all(a >= b for a, b in missed) and any(a > b for a, b in missed)


def _reading(report: FidelityReport) -> str:
    text = f"{report.measure} {report.achieved:.4f}"
    if report.agreement is not None:
        text += f", per-position argmax agreement {report.agreement:.4f}"
    return text
