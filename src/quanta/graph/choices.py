"""The ``auto`` choices of static quantization, settled by measurement.

``--method auto`` tries each range method and keeps the one whose model is closest to float on
held-out samples; ``--activation-type auto`` keeps int8 unless ONNX Runtime leaves fewer compute
ops float with uint8. Both compare whole builds of the model, made by ``quantize_static``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import onnx

from quanta.graph.config import QuantizeConfig
from quanta.graph.planner import StaticPlan
from quanta.opfacts import FACTS, OpKind
from quanta.quant import HistogramObserver, MinMaxObserver, Observer, QParams
from quanta.runtime import mean_cosine, run_model

__all__ = [
    "AUTO_METHODS",
    "FLOAT_COMPUTE",
    "Build",
    "activation_qparams",
    "best_method",
    "fastest_activation_type",
    "observer_factory",
]

# One build of the model: ``build(kept_float, method=..., activation_type=...)`` returns the
# quantized model, its plan, and how many biases were corrected.
Build = Callable[..., tuple[onnx.ModelProto, StaticPlan, int]]

# Range methods tried by ``method="auto"``, in order of preference on a tie.
AUTO_METHODS = ("minmax", "percentile", "mse", "entropy")

# Float ops that matter for speed when ONNX Runtime leaves them unfused, under their ONNX names and
# the names of ONNX Runtime's fused float kernels.
FLOAT_COMPUTE = frozenset(
    name
    for op, facts in FACTS.items()
    if facts.kind in (OpKind.COMPUTE, OpKind.ELEMENTWISE)
    for name in (op, *facts.ort_fused)
)


def observer_factory(config: QuantizeConfig) -> Callable[[], Observer]:
    """Min-max needs only the extremes; the other methods choose from a streamed histogram."""
    if config.method == "minmax":
        return MinMaxObserver
    method = "minmax" if config.method == "auto" else config.method
    return partial(HistogramObserver, method=method, percentile=config.percentile)


def activation_qparams(observer: Observer, dtype: str, method: str, percentile: float) -> QParams:
    """The grid ``method`` chooses from what ``observer`` saw."""
    if isinstance(observer, HistogramObserver):
        if method == "percentile":
            return observer.qparams(dtype, method=method, percentile=percentile)
        return observer.qparams(dtype, method=method)
    return observer.qparams(dtype)


def fastest_activation_type(build: Build, notes: list[str]) -> str:
    """int8 unless ONNX Runtime leaves fewer ops float with uint8 activations.

    On x86, ONNX Runtime fuses some QDQ patterns only for uint8 activations (a tensor read by
    several int8 nodes, as in residual blocks, keeps its consumers float with int8); counting
    the float compute ops in the graph it actually builds decides, without timing noise.
    """
    from quanta.runtime.kernels import count_kernels  # runtime is a leaf: no import cycle

    left = {}
    for dtype in ("int8", "uint8"):
        with tempfile.TemporaryDirectory(prefix="quanta-act-") as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save_model(build({}, activation_type=dtype)[0], path)
            counts = count_kernels(path)
        left[dtype] = sum(counts.all[op] - counts.int8.get(op, 0) for op in FLOAT_COMPUTE)
    best = "uint8" if left["uint8"] < left["int8"] else "int8"
    notes.append(
        f"{best} activations: ONNX Runtime leaves {left[best]} compute op(s) float with {best}, "
        f"{left['uint8' if best == 'int8' else 'int8']} with "
        f"{'uint8' if best == 'int8' else 'int8'}"
    )
    return best


def best_method(
    build: Build,
    feeds: Mapping[str, np.ndarray],
    reference: list[np.ndarray],
    notes: list[str],
    where: str = "",
) -> str:
    """The range method whose model's outputs are closest to float's (``reference``) on
    ``feeds`` (named ``where`` in the note); ties go to the first in ``AUTO_METHODS``."""
    scores = {
        m: mean_cosine(run_model(build({}, method=m)[0], feeds), reference) for m in AUTO_METHODS
    }
    best = max(AUTO_METHODS, key=lambda m: scores[m])
    where = where or f"{len(next(iter(feeds.values())))} samples"
    notes.append(
        f"method {best} chosen by output fidelity on {where} ("
        + ", ".join(f"{m} {v:.4f}" for m, v in scores.items())
        + ")"
    )
    return best
