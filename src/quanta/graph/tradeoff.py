"""Say what the fidelity fallback cost in speed, when it cost most of it.

The accuracy-aware fallback keeps float the nodes whose quantization costs the most output
fidelity. Where such a node carries most of the model's arithmetic, the model written keeps its
answers but loses int8's speed: magika (a byte-sequence classifier) keeps its one large
convolution float to lift the held-out mean cosine from 0.9933 to 0.9986 against the 0.997
target, and runs at float's speed, where its fully int8 build runs about twice as fast with the
same top-1 answers on its evaluation set. Whether that fidelity is enough depends on the task,
which static mode does not know; so static keeps the answers by default and ``speed_cost_note``
says, with the figures, what the fully int8 build would run at and how to ask for it.

The note is written only when the fully int8 build measures faster than the model kept by more
than the latency check's noise band (``FASTER_MARGIN``), in one interleaved timing of float,
the model kept and the fully int8 build. It changes no byte of the model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from quanta.graph import latency
from quanta.graph.latency import FASTER_MARGIN, Timer
from quanta.graph.result import FidelityReport

__all__ = ["speed_cost_note"]


def speed_cost_note(
    float_model: onnx.ModelProto,
    kept: onnx.ModelProto,
    fully_int8: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    report: FidelityReport,
    n_kept: int,
    timer: Timer | None = None,
) -> str | None:
    """One note when ``fully_int8`` runs clearly faster at batch 1 than ``kept`` (the model
    written, with ``n_kept`` nodes float for fidelity), else None.

    Args:
        float_model: the model as given.
        kept: the model written.
        fully_int8: the build with no node kept float for fidelity.
        feeds: at least one sample; the first is timed.
        report: the fallback's report on the model written (``before``: the fully int8 score).
        n_kept: the nodes kept float for fidelity (not those kept for speed).
    """
    if n_kept == 0:
        return None
    timer = timer or latency.DEFAULT_TIMER
    one = {k: np.asarray(v)[:1] for k, v in feeds.items()}
    f_ms, k_ms, q_ms = timer.batch1_ms([float_model, kept, fully_int8], one)
    if q_ms > FASTER_MARGIN * k_ms:
        return None
    samples = f"{report.held_out} held-out" if report.held_out else f"{report.calibrated}"
    fidelity = f"{report.measure} {report.before:.4f}"
    if report.agreement_before is not None:
        fidelity += f", per-position argmax agreement {report.agreement_before:.4f}"
        how = "--mode auto --eval DATA"
    else:
        how = f"--min-fidelity {np.floor(report.before * 1e4) / 1e4:.4f} or --mode auto --eval DATA"
    return (
        f"speed: the {n_kept} node(s) kept float for fidelity cost speed: {k_ms:.3f} ms "
        f"({f_ms / k_ms:.2f}× float) against {q_ms:.3f} ms "
        f"({f_ms / q_ms:.2f}×) fully int8, whose {fidelity} on {samples} calibration samples "
        f"misses the target; if that is enough for your task, {how} writes the faster model"
    )
