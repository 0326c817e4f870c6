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
   (2 %), times two more variants against it: its int8 regions that lost time to float kept
   float (``quanta.graph.regions``: a Q/DQ pair inside a region is fused away, one at its
   boundary costs), and every layer float compute with its weights stored int8 (about 4x
   smaller still, decoded once at session start); the fastest replaces it when faster by more
   than the band, in that timing and in a second one. The weight-only variant runs float's own
   kernels once ONNX Runtime has folded its decoders, so it also replaces the int8 model when,
   in both timings, int8 is not faster than float beyond the band and the variant is no slower
   than int8 (within the band, when its file is smaller): int8 compute that buys no
   measurable speed is not worth its larger file and its error.

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

from quanta.graph.planner import StaticPlan
from quanta.graph.profile_names import attribute, fused_outputs, int8_aliases, median_by_node
from quanta.graph.regions import slower_regions
from quanta.graph.result import FloatKind, FloatReason
from quanta.graph.twins import weight_sharers
from quanta.runtime import interleaved_latency, make_session
from quanta.runtime.profile import profile_node_times

__all__ = [
    "DEFAULT_TIMER",
    "FASTER_MARGIN",
    "MIN_EXCESS",
    "SLOWER_MARGIN",
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
# The int8 model counts as slower than float (one note says so) beyond this ratio.
SLOWER_THAN_FLOAT = 1.02


Build = tuple[onnx.ModelProto, StaticPlan, int]  # model, plan, biases corrected (static builds)


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
            f"kept float for speed: its int8 kernel (with its Q/DQ) took {int8_ms[n]:.3f} ms at "
            f"batch 1, its float kernel {float_ms[n]:.3f} ms (ONNX Runtime's profiler, this CPU)",
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
) -> Build:
    """``built`` or, when faster at batch 1, its rebuild with the nodes slower in int8 kept
    float; when that is still slower than float, the fastest of it, it with its slower int8
    regions kept float, and every layer float with int8-stored weights (see module doc).
    Appends one note with the batch-1 figures.

    Args:
        float_model: the model as given, timed against the int8 one.
        prepared: the prepared float model whose nodes the int8 builds keep names of.
        build: ``extra -> build`` with the ``extra`` nodes kept float as well.
        built: the int8 model as planned so far (its measured float nodes are kept in a rebuild).
        candidates: nodes that may be kept float (the quantized ones).
        feeds: at least one sample; the first is used.
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
                f"{r_ms:.3f} ms, not faster: all kept int8"
            )
    if _no_faster(c_ms, f_ms):  # the variants may be faster, or as fast and smaller
        # (see _Escalation.run)
        if chosen is not built:  # its regions' boundaries moved: profile what they are now
            float_ms, int8_ms = profile_float_int8(prepared, chosen[0], one, timer)
        step = _Escalation(float_model, prepared, build, candidates, kept, one, timer)
        return step.run(chosen, base, float_ms, int8_ms, notes)
    notes.append(_summary(f_ms, c_ms, n_speed, detail))
    return chosen


@dataclass
class _Escalation:
    """The int8 model is still slower than float at batch 1: time two more variants against it
    and keep the fastest. (1) its int8 regions whose kernels, Q/DQ included, took longer than
    their float kernels kept float (``quanta.graph.regions``); (2) every layer float compute
    with its weights stored int8 (``compress_float_weights``: the file stays about 4x smaller,
    ONNX Runtime decodes the weights once, at session start). A variant replaces the int8 model
    when it is faster by more than the noise band ``SLOWER_THAN_FLOAT`` that made us look."""

    float_model: onnx.ModelProto
    prepared: onnx.ModelProto
    build: Callable[[dict[str, str]], Build]
    candidates: Sequence[str]
    kept: Mapping[str, str]  # kept float for accuracy: their reason stands in every variant
    one: Mapping[str, np.ndarray]
    timer: Timer

    def run(
        self,
        chosen: Build,
        base: Mapping[str, str],
        float_ms: Mapping[str, float],
        int8_ms: Mapping[str, float],
        notes: list[str],
    ) -> Build:
        variants: list[tuple[str, Build]] = []
        floor = MIN_EXCESS * sum(float_ms.values())
        regions, n_regions = slower_regions(self.prepared, chosen[1], float_ms, int8_ms, floor)
        if regions and not set(self.candidates) <= {*base, *regions}:
            label = f"{n_regions} int8 region(s) slower than float ({len(regions)} layer(s)) float"
            variants.append((label, self.build({**base, **regions})))
        variants.append(("every layer float compute, weights stored int8", self._weight_only()))
        times = self.timer.batch1_ms(
            [self.float_model, chosen[0], *(b[0] for _, b in variants)], self.one
        )
        f_ms, c_ms, v_ms = times[0], times[1], times[2:]
        best = min(range(len(variants)), key=lambda i: v_ms[i])
        tried = ", ".join(
            f"{label}: {ms:.3f} ms ({f_ms / ms:.2f}×)"
            for (label, _), ms in zip(variants, v_ms, strict=True)
        )
        head = f"batch 1: {f_ms:.3f} ms float, {c_ms:.3f} ms int8 ({f_ms / c_ms:.2f}×)"
        # NOTE: the weight-only variant runs float's own kernels once ONNX Runtime has folded
        # its weight decoders at session start, so it is as fast as float: where the int8 model
        # is not faster than float beyond the band (twice), int8 compute buys nothing that can
        # be measured, and the weight-only variant is taken when no slower than int8, or when
        # its file is smaller and it is within the band of int8; its answers are float
        # compute's (rapidocr_cls: int8 0.97-1.03x float from run to run, 3.37x smaller, against
        # the weight-only variant's 3.56x)
        weight_only = len(variants) - 1
        smaller = variants[weight_only][1][0].ByteSize() < chosen[0].ByteSize()
        if v_ms[best] * SLOWER_THAN_FLOAT < c_ms:
            pick, as_float = best, False
        elif _as_fast(v_ms[weight_only], c_ms, smaller):
            pick, as_float = weight_only, True
        else:
            line = f"{head}; also timed {tried}, none faster: all kept int8"
            notes.append(_still_slower(line, f_ms, c_ms))
            return chosen
        # NOTE: a 2 % band is within one timing's noise on a busy machine: the switch, which
        # moves bytes, must hold in a second timing too
        label, result = variants[pick]
        f2_ms, c2_ms, b2_ms = self.timer.batch1_ms(
            [self.float_model, chosen[0], result[0]], self.one
        )
        again = f"{b2_ms:.3f} ms against {c2_ms:.3f} ms int8 in a second timing"
        held = (
            _no_faster(c2_ms, f2_ms) and _as_fast(b2_ms, c2_ms, smaller)
            if as_float
            else b2_ms * SLOWER_THAN_FLOAT < c2_ms
        )
        if not held:
            line = f"{head}; also timed {tried}; {label}: {again}, not faster: all kept int8"
            notes.append(_still_slower(line, f_ms, c_ms))
            return chosen
        line = f"{head}; also timed {tried}; kept: {label} ({again})"
        notes.append(_still_slower(line, f_ms, v_ms[pick]))
        return result

    def _weight_only(self) -> Build:
        why = FloatReason(
            "kept float for speed: the int8 model ran no faster than float at batch 1 on this CPU, "
            "so every layer computes in float, with its weights stored int8",
            FloatKind.SPEED,
        )
        return self.build({**{n: why for n in self.candidates}, **self.kept})


def _no_faster(int8_ms: float, float_ms: float) -> bool:
    """Whether int8 is not faster than float beyond the noise band."""
    return int8_ms * SLOWER_THAN_FLOAT > float_ms


def _as_fast(variant_ms: float, int8_ms: float, smaller: bool) -> bool:
    """Whether the weight-only variant may replace int8: no slower, or, when its file is
    smaller, no slower beyond the noise band."""
    return variant_ms <= int8_ms * (SLOWER_THAN_FLOAT if smaller else 1.0)


def _still_slower(line: str, float_ms: float, kept_ms: float) -> str:
    if kept_ms <= SLOWER_THAN_FLOAT * float_ms:
        return line
    return f"slower than float here: {line}. {_AUTO_HINT}"


_AUTO_HINT = (
    "--mode auto --eval EVAL.npz weighs float, dynamic and partly-float variants and keeps the "
    "fastest that meets an accuracy target"
)


def _summary(float_ms: float, int8_ms: float, n_speed: int, detail: str) -> str:
    ratio = float_ms / int8_ms if int8_ms > 0 else float("inf")
    line = f"batch 1: {float_ms:.3f} ms float, {int8_ms:.3f} ms int8 ({ratio:.2f}×)"
    if n_speed:
        line += f", {n_speed} layer(s) kept float for speed"
    if detail:
        line += f"; {detail}"
    return _still_slower(line, float_ms, int8_ms)
