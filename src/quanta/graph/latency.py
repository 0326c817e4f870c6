"""Never slower than float: keep float the layers whose int8 kernel runs slower on this machine.

Whether int8 is faster depends on the layer and the CPU: ONNX Runtime has no integer kernel for
some ops (HardSwish, HardSigmoid), so their Q/DQ pairs only add work, and a 3-channel first
convolution or a depthwise one can run slower in its int8 kernel than in its float (NCHWc) one.
So after the int8 model is built, ``keep_slower_float``:

1. profiles every node of the float and of the int8 model at batch 1 with ONNX Runtime's own
   profiler, in interleaved rounds (float, int8, float, int8, ...), and takes each node's median;
   a node's int8 time includes the QuantizeLinear/DequantizeLinear nodes that its being int8
   put in the graph and that ONNX Runtime did not fuse away;
2. keeps float (``FloatKind.SPEED``) every node whose int8 time exceeds its float time by
   ``SLOWER_MARGIN`` and by ``MIN_EXCESS`` of the float model's time (tiny kernels are noise);
3. rebuilds, then times the float model, the first int8 build and the rebuilt one at batch 1,
   interleaved; the rebuilt model replaces the first only when it is faster by ``FASTER_MARGIN``
   (so that noise never moves a layer for nothing);
4. when the model kept is not faster than float beyond the noise band ``SLOWER_THAN_FLOAT``
   (2 %), times more variants against it (``quanta.graph.escalation``): its slower int8
   regions kept float, every layer float compute with its weights stored int8, and that with
   its Gemm/MatMul in dynamic int8.

One note gives the figures; where the model kept is still slower than float it says so and
suggests ``--mode auto``. A model that measured faster than float beyond the band never
reaches step 4, so its bytes move only when a rebuild beats ``FASTER_MARGIN``.

``--mode auto`` profiles with the same functions (``profile_float_int8``, ``slower_nodes``).
The measuring is a ``Timer``: tests inject one that returns fixed figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from quanta.graph.escalation import (
    SLOWER_THAN_FLOAT,
    Build,
    DynamicBuild,
    Escalation,
    ms,
    no_faster,
    still_slower,
)
from quanta.graph.profile_names import attribute, fused_outputs, int8_aliases, median_by_node
from quanta.graph.result import FloatKind, FloatReason
from quanta.graph.twins import weight_sharers
from quanta.runtime import interleaved_latency, make_session
from quanta.runtime.profile import profile_node_times

__all__ = [
    "DEFAULT_TIMER",
    "FASTER_MARGIN",
    "MIN_EXCESS",
    "SLOWER_MARGIN",
    "SLOWER_THAN_FLOAT",
    "Timer",
    "fused_outputs",
    "keep_slower_float",
    "profile_float_int8",
    "slower_nodes",
]

# A node is "slower in int8" when its int8 time is this much longer than its float time ...
SLOWER_MARGIN = 1.10
# ... and longer by at least this fraction of the whole float model's time (below it, noise).
MIN_EXCESS = 0.002
# The rebuilt model replaces the first int8 build only when at most this fraction of its time.
# NOTE: at 0.97 MobileNetV2's default model changed from run to run on this 2-core machine (its
# rebuild measured 2.5 % faster in one run, not in the next): a smaller gain than 10 % is within
# the timing noise, and acting on it would make the written bytes depend on the run.
FASTER_MARGIN = 0.90


@dataclass(frozen=True)
class Timer:
    """How time is measured (tests inject a subclass with fixed figures).

    Attributes:
        rounds: interleaved profiling rounds of float and int8 (each node's median is kept).
        runs: profiled runs per round, after one warm-up.
        budget_s: seconds of batch-1 timing per model in the final comparison.
    """

    rounds: int = 3
    runs: int = 10
    budget_s: float = 0.5

    def node_times(
        self, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, float]:
        """Mean ms per run of each node ONNX Runtime ran, by profiled name."""
        return profile_node_times(model, feeds, runs=self.runs)

    def batch1_ms(
        self, models: Sequence[onnx.ModelProto], feeds: Mapping[str, np.ndarray]
    ) -> list[float]:
        """Median batch-1 latency of each model, timed in interleaved rounds."""
        sessions = [make_session(m.SerializeToString()) for m in models]
        latencies = interleaved_latency(sessions, feeds, 1, budget_s=self.budget_s * len(models))
        return [lat.p50_ms for lat in latencies]


# What ``keep_slower_float`` measures with when given no timer (tests replace it).
DEFAULT_TIMER = Timer()


def profile_float_int8(
    prepared: onnx.ModelProto,
    int8: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    timer: Timer | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per node of ``prepared``: its median time (ms, batch 1) in the float model and in
    ``int8`` (with the Q/DQ nodes its quantization added), profiled in interleaved rounds."""
    timer = timer or Timer()
    one = {k: np.asarray(v)[:1] for k, v in feeds.items()}
    float_rounds, int8_rounds = [], []
    for _ in range(max(1, timer.rounds)):
        float_rounds.append(timer.node_times(prepared, one))
        int8_rounds.append(timer.node_times(int8, one))
    float_ms = attribute(median_by_node(float_rounds), fused_outputs(prepared))
    int8_ms = attribute(median_by_node(int8_rounds), int8_aliases(int8, prepared))
    return float_ms, int8_ms


def slower_nodes(
    float_ms: Mapping[str, float],
    int8_ms: Mapping[str, float],
    candidates: Sequence[str] | None = None,
) -> dict[str, FloatReason]:
    """The nodes (of ``candidates``, default all) whose int8 time is above ``SLOWER_MARGIN``
    times their float time and above it by ``MIN_EXCESS`` of the float model's total, each with
    the measured reason."""
    floor = MIN_EXCESS * sum(float_ms.values())
    names = float_ms if candidates is None else [n for n in candidates if n in float_ms]
    return {
        n: FloatReason(
            f"kept float for speed: its int8 kernel (with its Q/DQ) took {ms(int8_ms[n])} at "
            f"batch 1, its float kernel {ms(float_ms[n])} (ONNX Runtime's profiler, this CPU)",
            FloatKind.SPEED,
        )
        for n in names
        if n in int8_ms
        and int8_ms[n] > SLOWER_MARGIN * float_ms[n]
        and int8_ms[n] - float_ms[n] > floor
    }


def _slower_together(
    prepared: onnx.ModelProto,
    float_ms: Mapping[str, float],
    int8_ms: Mapping[str, float],
    candidates: Sequence[str],
) -> dict[str, FloatReason]:
    """``slower_nodes``, with the nodes that read one weight judged together, by their summed
    times: all kept float or none, so the weight is stored once (one unrolled LSTM step's Gemm
    profiled 0.449 ms in int8 against 0.071 ms float on a busy machine, where its twins did
    not, and keeping it alone float stored its weight a second time)."""
    groups = {g[0]: g for g in weight_sharers(prepared, candidates)}
    merged_f, merged_q = dict(float_ms), dict(int8_ms)
    for first, group in groups.items():
        for merged, times in ((merged_f, float_ms), (merged_q, int8_ms)):
            for name in group:
                merged.pop(name, None)
            if all(name in times for name in group):
                merged[first] = sum(times[name] for name in group)
    members = {m for g in groups.values() for m in g[1:]}
    slower = slower_nodes(merged_f, merged_q, [n for n in candidates if n not in members])
    expanded = {}
    for name, reason in slower.items():
        group = groups.get(name, [name])
        if len(group) > 1:
            reason = FloatReason(
                f"{reason}; times summed over the {len(group)} nodes that read its weight",
                reason.kind,
            )
        expanded.update({m: reason for m in group})
    return expanded


def keep_slower_float(
    float_model: onnx.ModelProto,
    prepared: onnx.ModelProto,
    build: Callable[[dict[str, str]], Build],
    built: Build,
    candidates: Sequence[str],
    feeds: Mapping[str, np.ndarray],
    notes: list[str],
    timer: Timer | None = None,
    dynamic: DynamicBuild | None = None,
) -> Build:
    """``built`` or, when faster at batch 1, its rebuild with the nodes slower in int8 kept
    float; when that is still slower than float, the fastest of it, it with its slower int8
    regions kept float, every layer float with int8-stored weights, and that with its
    Gemm/MatMul in dynamic int8 (see module doc). Appends one note with the batch-1 figures.

    Args:
        float_model: the model as given, timed against the int8 one.
        prepared: the prepared float model whose nodes the int8 builds keep names of.
        build: ``extra -> build`` with the ``extra`` nodes kept float as well.
        built: the int8 model as planned so far (its measured float nodes are kept in a rebuild).
        candidates: nodes that may be kept float (the quantized ones).
        feeds: at least one sample; the first is used.
        dynamic: ``(extra, names) -> build`` with ``extra`` float and ``names`` of them in
            dynamic int8, None where its answers miss the target (None: not tried).
    """
    timer = timer or DEFAULT_TIMER
    one = {k: np.asarray(v)[:1] for k, v in feeds.items()}
    float_ms, int8_ms = profile_float_int8(prepared, built[0], one, timer)
    slower = _slower_together(prepared, float_ms, int8_ms, candidates)
    kept = {f.name: f.reason for f in built[1].float_nodes if f.kind is FloatKind.ACCURACY}
    if not slower:
        f_ms, q_ms = timer.batch1_ms([float_model, built[0]], one)
        chosen, base, detail = built, kept, "no layer's int8 kernel measured slower than float"
        c_ms, n_speed = q_ms, 0
    else:
        rebuilt = build({**kept, **slower})
        f_ms, q_ms, r_ms = timer.batch1_ms([float_model, built[0], rebuilt[0]], one)
        if r_ms <= FASTER_MARGIN * q_ms:
            chosen, base, detail, c_ms, n_speed = rebuilt, {**kept, **slower}, "", r_ms, len(slower)
        else:
            chosen, base, c_ms, n_speed = built, kept, q_ms, 0
            detail = (
                f"keeping the {len(slower)} layer(s) slower in int8 float measured "
                f"{ms(r_ms)}, not faster: all kept int8"
            )
    if no_faster(c_ms, f_ms):  # the variants may be faster, or as fast and smaller
        # (see Escalation.run)
        if chosen is not built:  # its regions' boundaries moved: profile what they are now
            float_ms, int8_ms = profile_float_int8(prepared, chosen[0], one, timer)
        step = Escalation(float_model, prepared, build, candidates, kept, one, timer, dynamic)
        floor = MIN_EXCESS * sum(float_ms.values())
        return step.run(chosen, base, float_ms, int8_ms, floor, notes)
    notes.append(_summary(f_ms, c_ms, n_speed, detail))
    return chosen


def _summary(float_ms: float, int8_ms: float, n_speed: int, detail: str) -> str:
    ratio = float_ms / int8_ms if int8_ms > 0 else float("inf")
    line = f"batch 1: {ms(float_ms)} float, {ms(int8_ms)} int8 ({ratio:.2f}×)"
    if n_speed:
        line += f", {n_speed} layer(s) kept float for speed"
    if detail:
        line += f"; {detail}"
    return still_slower(line, float_ms, int8_ms)
