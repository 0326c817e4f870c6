"""``--mode auto``: the fastest model that meets an accuracy target, measured on this machine.

Quantizers usually stop at "every layer int8, unless accuracy says otherwise". Whether int8 is
*faster* depends on the layer and the CPU: a 3-channel first convolution or a depthwise one at
high resolution can run slower in ONNX Runtime's int8 kernels than in its float (NCHWc) ones,
and every switch between int8 and float costs a conversion. So ``auto`` measures:

1. candidates: the float model; float compute with int8-stored weights (``weight-only``);
   ``dynamic``; full static int8; static int8 with the layers that hurt the target most kept
   float, chosen by damage per millisecond of float time (accuracy-aware, cost-aware); and that
   model again with every layer whose int8 kernel ONNX Runtime's profiler measured slower than
   its float kernel kept float too (latency-aware);
2. each candidate's score on the evaluation data (top-1 accuracy against labels, or the mean
   cosine similarity of its outputs to the float model's) against the target;
3. each candidate's batch-1 latency, interleaved in rounds so that all see the same machine;
4. the fastest candidate that meets the target. The float model always meets it, so the result
   is never slower than float (within the measurement's noise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from quanta.errors import InputError, ModelError
from quanta.graph.calibrate import CalibrationData
from quanta.graph.config import QuantizeConfig
from quanta.graph.dynamic import quantize_dynamic
from quanta.graph.prepare import prepare
from quanta.graph.result import FloatNode, QuantizeResult
from quanta.graph.static import FidelityGoal, quantize_static
from quanta.graph.weight_only import compress_float_weights
from quanta.runtime import interleaved_latency, make_session, mean_cosine, run_model
from quanta.runtime.profile import profile_node_times

__all__ = ["AutoTarget", "Candidate", "quantize_auto"]

# the reason the accuracy-aware search gives (quanta.graph.sensitivity)
_SEARCHED = "kept float: quantizing it alone"

# A layer is "slower in int8" when its int8 kernel takes this much longer than its float one.
SLOWER_MARGIN = 1.10


@dataclass(frozen=True)
class AutoTarget:
    """Exactly one of: the accuracy drop allowed (percentage points, needs labels), or the
    minimum mean cosine similarity of the outputs to the float model's."""

    max_accuracy_drop: float | None = None
    min_fidelity: float | None = None

    def __post_init__(self) -> None:
        if (self.max_accuracy_drop is None) == (self.min_fidelity is None):
            raise InputError("--mode auto takes one of --max-accuracy-drop PP or --min-fidelity F")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            raise InputError(
                f"--max-accuracy-drop must be in [0, 100] percentage points, got "
                f"{self.max_accuracy_drop}"
            )
        if self.min_fidelity is not None and not 0 < self.min_fidelity <= 1:
            raise InputError(f"--min-fidelity must be in (0, 1], got {self.min_fidelity}")


@dataclass
class Candidate:
    name: str
    model: onnx.ModelProto
    score: float = float("nan")
    meets: bool = False
    latency_ms: float = float("nan")
    detail: str = ""

    @property
    def size_bytes(self) -> int:
        return self.model.ByteSize()


@dataclass
class AutoResult(QuantizeResult):
    candidates: list[Candidate] = field(default_factory=list)
    chosen: str = ""
    measure: str = ""
    target: float = float("nan")


def _accuracy(outputs: list[np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(outputs[0]).argmax(axis=-1) == labels))


def _fused_outputs(model: onnx.ModelProto) -> dict[str, set[str]]:
    """Per node: the tensor names ONNX Runtime may profile it under (its own outputs, and
    those of a Relu/Clip it fuses)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    names: dict[str, set[str]] = {}
    for node in model.graph.node:
        aliases = {node.name, *node.output}
        for out in node.output:
            users = readers.get(out, [])
            if len(users) == 1 and users[0].op_type in ("Relu", "Clip"):
                aliases.update(users[0].output)
        names[node.name] = aliases
    return names


def _node_times(
    model: onnx.ModelProto, aliases: Mapping[str, set[str]], feeds: Mapping[str, np.ndarray]
) -> dict[str, float]:
    profiled = profile_node_times(model, feeds, runs=20)
    return {
        node: sum(profiled.get(alias, 0.0) for alias in names)
        for node, names in aliases.items()
        if any(alias in profiled for alias in names)
    }


def _measure_latency(
    candidates: list[Candidate], feeds: Mapping[str, np.ndarray], budget_s: float
) -> None:
    sessions = [make_session(c.model.SerializeToString()) for c in candidates]
    one = {k: np.asarray(v)[:1] for k, v in feeds.items()}
    for c, lat in zip(
        candidates,
        interleaved_latency(sessions, one, 1, budget_s=budget_s * len(sessions)),
        strict=True,
    ):
        c.latency_ms = lat.p50_ms


def quantize_auto(
    model: onnx.ModelProto,
    data: CalibrationData,
    eval_inputs: Mapping[str, np.ndarray],
    target: AutoTarget,
    *,
    labels: np.ndarray | None = None,
    config: QuantizeConfig | None = None,
    on_step: Callable[[str], None] | None = None,
    latency_budget_s: float = 1.5,
) -> AutoResult:
    """Return the fastest candidate meeting ``target`` on ``eval_inputs`` (see module doc).

    ``latency_budget_s``: seconds of timing per candidate (more: steadier medians).
    """
    config = config or QuantizeConfig()
    step = on_step or (lambda _msg: None)
    n_eval = len(next(iter(eval_inputs.values())))
    reference = run_model(model, eval_inputs)
    metric: Callable[[list[np.ndarray]], float]
    if target.max_accuracy_drop is not None:
        if labels is None:
            raise InputError(
                "--max-accuracy-drop needs labels in the evaluation data (an array 'labels'); "
                "without them use --min-fidelity"
            )
        labels = np.asarray(labels)
        goal_value = _accuracy(reference, labels) - target.max_accuracy_drop / 100.0
        measure = "top-1 accuracy"
        metric = lambda outputs: _accuracy(outputs, labels)  # noqa: E731
    else:
        assert target.min_fidelity is not None
        goal_value = target.min_fidelity
        measure = "mean output cosine to float"
        metric = lambda outputs: mean_cosine(outputs, reference)  # noqa: E731
    where = f"{n_eval} evaluation samples"
    notes: list[str] = []
    candidates = [Candidate("float", model, detail="the float model as given")]

    step("weight-only int8 storage")
    prepared = prepare(model)
    weight_only = onnx.ModelProto()
    weight_only.CopyFrom(prepared)
    if compress_float_weights(weight_only, per_channel=config.per_channel):
        candidates.append(
            Candidate("weight-only", weight_only, detail="float compute, int8-stored weights")
        )
    step("dynamic int8")
    try:
        dyn = quantize_dynamic(model, dataclasses.replace(config, mode="dynamic"))
        candidates.append(Candidate("dynamic", dyn.model, detail="; ".join(dyn.notes)))
    except ModelError as exc:
        notes.append(f"dynamic: not a candidate ({exc})")

    step("static int8, every layer")
    static_config = dataclasses.replace(config, mode="static", min_fidelity=None)
    full = quantize_static(model, data, static_config)
    candidates.append(Candidate("static (all int8)", full.model, detail="every layer int8"))
    candidates[-1].score = metric(run_model(full.model, eval_inputs))

    # per-node time of the float and the all-int8 model, from ONNX Runtime's profiler
    step("profiling float and int8 kernels")
    one = {k: np.asarray(v)[:1] for k, v in eval_inputs.items()}
    aliases = _fused_outputs(prepared)
    float_ms = _node_times(prepared, aliases, one)
    int8_ms = _node_times(full.model, {n: {n} for n in aliases}, one)
    slower = {
        n: (
            f"kept float for speed: its int8 kernel took {int8_ms[n]:.3f} ms at batch 1, its "
            f"float kernel {float_ms[n]:.3f} ms (ONNX Runtime's profiler, this CPU)"
        )
        for n in aliases
        if n in int8_ms and n in float_ms and int8_ms[n] > SLOWER_MARGIN * float_ms[n]
    }

    accurate: QuantizeResult = full
    if candidates[-1].score < goal_value:
        step("static int8, keeping the costliest layers float")
        goal = FidelityGoal(
            eval_inputs, metric, goal_value, measure=measure, where=where,
            cost={n: max(ms - int8_ms.get(n, 0.0), 0.0) for n, ms in float_ms.items()},
        )  # fmt: skip
        accurate = quantize_static(
            model, data, dataclasses.replace(config, mode="static"), goal=goal
        )
        n_kept = len([f for f in accurate.float_nodes if f.reason.startswith(_SEARCHED)])
        candidates.append(
            Candidate("static (accuracy-aware)", accurate.model, detail=f"{n_kept} layer(s) float")
        )
    if slower:
        step("static int8 without the layers int8 makes slower")
        kept = {f.name: f.reason for f in accurate.float_nodes if f.reason.startswith(_SEARCHED)}
        try:
            fast = quantize_static(
                model, data, dataclasses.replace(config, mode="static", min_fidelity=None),
                keep_float={**kept, **slower},
            )  # fmt: skip
        except ModelError as exc:  # e.g. every layer is slower in int8
            notes.append(f"static (latency-aware): not a candidate ({exc})")
        else:
            candidates.append(
                Candidate(
                    "static (latency-aware)", fast.model,
                    detail=f"{len(kept)} layer(s) float for accuracy, {len(slower)} for speed",
                )
            )  # fmt: skip
    else:
        notes.append("no layer's int8 kernel was measurably slower than its float kernel here")

    step("scoring every candidate")
    for c in candidates:
        if np.isnan(c.score):
            c.score = metric(run_model(c.model, eval_inputs))
        c.meets = c.score >= goal_value - 1e-12
    step("timing every candidate (batch 1, interleaved)")
    _measure_latency(candidates, eval_inputs, latency_budget_s)
    feasible = [c for c in candidates if c.meets]
    chosen = min(feasible, key=lambda c: (c.latency_ms, c.size_bytes))
    notes.append(
        f"target: {measure} >= {goal_value:.4f} on {where}; chose {chosen.name!r}: the fastest "
        f"candidate that meets it ({chosen.latency_ms:.3f} ms at batch 1)"
    )
    for c in candidates:
        notes.append(
            f"  {c.name}: {measure} {c.score:.4f} ({'meets' if c.meets else 'misses'} the "
            f"target), {c.latency_ms:.3f} ms, {c.size_bytes / 1e6:.2f} MB — {c.detail}"
        )
    float_nodes: list[FloatNode] = []
    if chosen.name.startswith("static"):
        source = {"static (all int8)": full, "static (accuracy-aware)": accurate}.get(chosen.name)
        if source is not None:
            float_nodes = source.float_nodes
        else:
            float_nodes = [
                FloatNode(n, next(x.op_type for x in prepared.graph.node if x.name == n), why)
                for n, why in {**{f.name: f.reason for f in accurate.float_nodes}, **slower}.items()
            ]
    return AutoResult(
        chosen.model, float_nodes, notes, candidates=candidates, chosen=chosen.name,
        measure=measure, target=goal_value,
    )  # fmt: skip
