"""The last resort for speed: when the int8 model is no faster than float at batch 1.

``quanta.graph.latency`` keeps float the layers whose int8 kernels run slower; when the model
it keeps is still not faster than float beyond the noise band ``SLOWER_THAN_FLOAT`` (2 %),
``Escalation`` times more variants against it:

1. its int8 regions that lost time to float kept float (``quanta.graph.regions``: a Q/DQ pair
   inside a region is fused away, one at its boundary costs);
2. every layer float compute with its weights stored int8 (about 4x smaller still, decoded once
   at session start): it runs float's own kernels;
3. the same with its Gemm/MatMul layers in dynamic int8 (``quanta.graph.dynamic``:
   ``DynamicQuantizeMatMul`` measures each input's range at run time, so no calibrated range
   saturates or wastes steps), where the answers still meet the fidelity target. On MTCNN's
   small face models, where every calibrated-int8 build ran slower than float, it measured
   1.02-1.04x float where float compute ties at 1.00x.

The fastest replaces the int8 model when faster by more than the band, in that timing and in
a second one. Variant 3 stands in for variant 2 only when at least ``DYNAMIC_EDGE`` faster than
it in both timings: it costs some of the answers' fidelity, which a tie does not pay for.
Variants 2 and 3 also replace the int8 model when, in both timings, int8 is not faster than
float beyond the band and the variant is no slower than int8 (within the band, when its file
is smaller): int8 compute that buys no measurable speed is not worth its larger file and error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from quanta.graph.planner import StaticPlan
from quanta.graph.regions import slower_regions
from quanta.graph.result import FloatKind, FloatReason

if TYPE_CHECKING:
    from quanta.graph.latency import Timer

__all__ = [
    "DYNAMIC_EDGE",
    "SLOWER_THAN_FLOAT",
    "Build",
    "DynamicBuild",
    "Escalation",
    "ms",
    "no_faster",
    "still_slower",
]

Build = tuple[onnx.ModelProto, StaticPlan, int]  # model, plan, biases corrected (static builds)
# ``extra`` nodes kept float and the ``names`` of them to run as dynamic int8 -> the build, or
# None when none could be or its answers miss the fidelity target
DynamicBuild = Callable[[dict[str, str], list[str]], Build | None]

# The int8 model counts as slower than float (one note says so) beyond this ratio.
SLOWER_THAN_FLOAT = 1.02
# The dynamic variant stands in for the float-compute one only at this fraction of its time.
# NOTE: at 0.99 MTCNN RNet's dynamic heads (1.5-3 % faster than float compute in four runs)
# lost to float compute in one run of six; 0.5 % is still above a tie's noise
DYNAMIC_EDGE = 0.995

_WEIGHT_ONLY = "every layer float compute, weights stored int8"


@dataclass
class Escalation:
    """Time the variants of the module doc against the int8 model ``chosen``; keep the fastest.

    ``kept`` are the nodes kept float for accuracy: their reason stands in every variant.
    ``dynamic`` builds variant 3 (None: not tried).
    """

    float_model: onnx.ModelProto
    prepared: onnx.ModelProto
    build: Callable[[dict[str, str]], Build]
    candidates: Sequence[str]
    kept: Mapping[str, str]
    one: Mapping[str, np.ndarray]
    timer: Timer
    dynamic: DynamicBuild | None = None

    def run(
        self,
        chosen: Build,
        base: Mapping[str, str],
        float_ms: Mapping[str, float],
        int8_ms: Mapping[str, float],
        floor: float,
        notes: list[str],
    ) -> Build:
        variants: list[tuple[str, Build]] = []
        regions, n_regions = slower_regions(self.prepared, chosen[1], float_ms, int8_ms, floor)
        if regions and not set(self.candidates) <= {*base, *regions}:
            label = f"{n_regions} int8 region(s) slower than float ({len(regions)} layer(s)) float"
            variants.append((label, self.build({**base, **regions})))
        weight_only = len(variants)
        variants.append((_WEIGHT_ONLY, self._weight_only()))
        dynamic = self._dynamic()
        if dynamic is not None:
            variants.append(dynamic)
        times = self.timer.batch1_ms(
            [self.float_model, chosen[0], *(b[0] for _, b in variants)], self.one
        )
        f_ms, c_ms, v_ms = times[0], times[1], times[2:]
        tried = ", ".join(
            f"{label}: {ms(t)} ({f_ms / t:.2f}×)"
            for (label, _), t in zip(variants, v_ms, strict=True)
        )
        head = f"batch 1: {ms(f_ms)} float, {ms(c_ms)} int8 ({f_ms / c_ms:.2f}×)"
        # the dynamic variant stands in for the float-compute one only when clearly faster
        like_float = weight_only
        if dynamic is not None and v_ms[-1] < DYNAMIC_EDGE * v_ms[weight_only]:
            like_float = len(variants) - 1
        considered = [i for i in range(len(variants)) if i <= weight_only or i == like_float]
        best = min(considered, key=lambda i: v_ms[i])
        # NOTE: the float-compute variant runs float's own kernels once ONNX Runtime has folded
        # its weight decoders at session start, so it is as fast as float: where the int8
        # model is not faster than float beyond the band (twice), int8 compute buys nothing
        # that can be measured, and it is taken when no slower than int8, or when its file is
        # smaller and it is within the band of int8; its answers are float compute's
        # (rapidocr_cls: int8 0.97-1.03x float from run to run, 3.37x smaller, against the
        # weight-only variant's 3.56x)
        smaller = self._smaller(variants[like_float][1], chosen)
        if v_ms[best] * SLOWER_THAN_FLOAT < c_ms:
            pick, as_float = best, False
        elif _as_fast(v_ms[like_float], c_ms, smaller):
            pick, as_float = like_float, True
        else:
            line = f"{head}; also timed {tried}, none faster: all kept int8"
            notes.append(still_slower(line, f_ms, c_ms))
            return chosen
        # NOTE: a 2 % band is within one timing's noise on a busy machine: the switch, which
        # moves bytes, must hold in a second timing too
        (label, result), kept_ms = variants[pick], v_ms[pick]
        stand_in = pick > weight_only  # the dynamic variant: must still beat float compute
        again_models = [self.float_model, chosen[0], result[0]]
        f2_ms, c2_ms, b2_ms, *w2_ms = self.timer.batch1_ms(
            again_models + ([variants[weight_only][1][0]] if stand_in else []), self.one
        )
        held = (
            no_faster(c2_ms, f2_ms) and _as_fast(b2_ms, c2_ms, smaller)
            if as_float
            else b2_ms * SLOWER_THAN_FLOAT < c2_ms
        )
        again = f"{ms(b2_ms)} against {ms(c2_ms)} int8 in a second timing"
        if held and stand_in and not b2_ms < DYNAMIC_EDGE * w2_ms[0]:
            held = False
            (label, result), kept_ms, b2_ms = variants[weight_only], v_ms[weight_only], w2_ms[0]
            fell_back = no_faster(c2_ms, f2_ms) and _as_fast(
                b2_ms, c2_ms, self._smaller(result, chosen)
            )
            if fell_back or b2_ms * SLOWER_THAN_FLOAT < c2_ms:
                held = True
                again = (
                    f"{ms(b2_ms)} against {ms(c2_ms)} int8 in a second timing, where the "
                    "dynamic one was not faster than it"
                )
        if not held:
            line = f"{head}; also timed {tried}; {label}: {again}, not faster: all kept int8"
            notes.append(still_slower(line, f_ms, c_ms))
            return chosen
        line = f"{head}; also timed {tried}; kept: {label} ({again})"
        notes.append(still_slower(line, f_ms, kept_ms))
        return result

    def _weight_only_extra(self, why: str) -> dict[str, str]:
        reason = FloatReason(f"kept float for speed: {why}", FloatKind.SPEED)
        return {**{n: reason for n in self.candidates}, **self.kept}

    def _weight_only(self) -> Build:
        return self.build(
            self._weight_only_extra(
                "the int8 model ran no faster than float at batch 1 on this CPU, so every "
                "layer computes in float, with its weights stored int8"
            )
        )

    def _dynamic(self) -> tuple[str, Build] | None:
        """Variant 3, or None when there is no Gemm/MatMul to run so or it misses the target."""
        if self.dynamic is None:
            return None
        ops = {n.name: n.op_type for n in self.prepared.graph.node}
        names = [
            n for n in self.candidates if ops.get(n) in ("Gemm", "MatMul") and n not in self.kept
        ]
        if not names:
            return None
        why = (
            "the int8 model ran no faster than float at batch 1 on this CPU, so it computes in "
            "float, with its weights stored int8, and its Gemm/MatMul in dynamic int8"
        )
        built = self.dynamic(self._weight_only_extra(why), names)
        if built is None:
            return None
        n_dynamic = sum(n.op_type == "DynamicQuantizeLinear" for n in built[0].graph.node)
        return f"{_WEIGHT_ONLY}, {n_dynamic} Gemm/MatMul dynamic int8", built

    @staticmethod
    def _smaller(variant: Build, chosen: Build) -> bool:
        return variant[0].ByteSize() < chosen[0].ByteSize()


def ms(value: float) -> str:
    """A batch-1 time for people: three decimals, four below 0.1 ms (tiny models)."""
    return f"{value:.3f} ms" if value >= 0.1 else f"{value:.4f} ms"


def no_faster(int8_ms: float, float_ms: float) -> bool:
    """Whether int8 is not faster than float beyond the noise band."""
    return int8_ms * SLOWER_THAN_FLOAT > float_ms


def _as_fast(variant_ms: float, int8_ms: float, smaller: bool) -> bool:
    """Whether a float-compute variant may replace int8: no slower, or, when its file is
    smaller, no slower beyond the noise band."""
    return variant_ms <= int8_ms * (SLOWER_THAN_FLOAT if smaller else 1.0)


def still_slower(line: str, float_ms: float, kept_ms: float) -> str:
    """``line``, or, when ``kept_ms`` is slower than float beyond the band, saying so."""
    if kept_ms <= SLOWER_THAN_FLOAT * float_ms:
        return line
    return f"slower than float here: {line}. {_AUTO_HINT}"


_AUTO_HINT = (
    "--mode auto --eval EVAL.npz weighs float, dynamic and partly-float variants and keeps the "
    "fastest that meets an accuracy target"
)
