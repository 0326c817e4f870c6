"""Static (full-integer) quantization to QDQ: int8 weights and calibrated int8 activations.

The pass plans every node (``quanta.graph.planner``), calibrates the activation tensors the plan
needs in one ONNX Runtime run, then rewrites the graph:

- a Relu/Clip after Conv/Gemm/MatMul/Add is absorbed: the producer's output is quantized with
  the activation's range, whose saturation clamps as the activation did;
- weights become int8 initializers + DequantizeLinear (symmetric, per output channel);
- biases become int32 with scale ``s_in * s_w`` + DequantizeLinear;
- each quantized activation ``T`` gets ``QuantizeLinear -> DequantizeLinear`` right after its
  producer; the producer writes ``T_prequant`` and the DequantizeLinear writes ``T``, so consumers
  and graph outputs keep their names.

ONNX Runtime then fuses the QDQ groups into integer kernels (QLinearConv, QGemm, QLinearAdd,
int8 MaxPool, ...).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph.bias_correction import MEAN_AXIS, bias_shift
from quanta.graph.calibrate import CalibrationData, collect_statistics
from quanta.graph.compact import compact_qdq
from quanta.graph.config import QuantizeConfig
from quanta.graph.index import GraphIndex
from quanta.graph.ops import MAX_RANGE_RATIO
from quanta.graph.planner import StaticPlan, plan_static
from quanta.graph.prepare import prepare
from quanta.graph.result import QuantizeResult
from quanta.graph.rewrite import (
    Names,
    dequantize_node,
    qparams_initializers,
    quantize_bias,
    quantize_weight,
    remove_unused,
)
from quanta.graph.sensitivity import mean_cosine, run_model, search_float_nodes
from quanta.graph.weight_only import compress_float_weights
from quanta.quant import HistogramObserver, MinMaxObserver, Observer, QParams, dequantize
from quanta.runtime.machine import int8_pairs_saturate

__all__ = ["FidelityGoal", "apply_qdq", "quantize_static", "mismatched_concats"]


@dataclass(frozen=True)
class FidelityGoal:
    """What "accurate enough" means for the accuracy-aware fallback, when the caller knows
    better than held-out calibration samples: the samples, a metric of the model's outputs on
    them (higher is better), the target, and how to name both in notes."""

    feeds: Mapping[str, np.ndarray]
    metric: Callable[[list[np.ndarray]], float]
    target: float
    measure: str = "mean output cosine to float"
    where: str = "the evaluation samples"
    cost: Mapping[str, float] | None = None  # per node: what keeping it float costs (ms)


# Float ops that matter for speed when ONNX Runtime leaves them unfused.
FLOAT_COMPUTE = ("Conv", "FusedConv", "MatMul", "Gemm", "FusedGemm", "Add", "Mul", "FusedMatMul")


def mismatched_concats(
    model: onnx.ModelProto, plan: StaticPlan, ranges: dict[str, Observer]
) -> dict[str, str]:
    """Concat nodes whose inputs' ranges differ too much to share one output scale."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type != "Concat" or node.name not in plan.plans:
            continue
        widths = []
        for name in node.input:
            lo, hi = ranges[plan.source[name]].range()
            widths.append(float(np.max(hi) - np.min(lo)))
        narrow, wide = min(widths), max(widths)
        if narrow <= 0 or wide / narrow > MAX_RANGE_RATIO:
            out[node.name] = (
                f"kept float: its inputs' ranges differ {wide / max(narrow, 1e-30):.0f}x (limit "
                f"{MAX_RANGE_RATIO:.0f}x), one int8 scale would erase the narrow ones"
            )
    return out


# Range methods tried by ``method="auto"``, in order of preference on a tie.
AUTO_METHODS = ("minmax", "percentile", "mse", "entropy")


def _readers_of(
    model: onnx.ModelProto, plan: StaticPlan, concats: dict[str, str]
) -> dict[str, str]:
    """The int8 nodes that read a kept-float Concat's output: they must stay float too, or the
    QuantizeLinear they put on it recreates the single shared scale (ONNX Runtime would even fuse
    the Concat back into QLinearConcat)."""
    outputs = {
        o: name
        for n in model.graph.node
        if n.name in concats
        for o, name in [(n.output[0], n.name)]
    }
    readers = {}
    for node in model.graph.node:
        op_plan = plan.plans.get(node.name)
        if op_plan is None or node.name in concats:
            continue
        read = [node.input[i] for i in op_plan.activations]
        if op_plan.output == "shared":
            read.append(node.input[0])
        for name in read:
            if name in outputs:
                readers[node.name] = f"kept float: it reads {outputs[name]!r}, a Concat kept float"
    return readers


def observer_factory(config: QuantizeConfig) -> Callable[[], Observer]:
    """Min-max needs only the extremes; the other methods choose from a streamed histogram."""
    if config.method == "minmax":
        return MinMaxObserver
    method = "minmax" if config.method == "auto" else config.method
    return partial(HistogramObserver, method=method, percentile=config.percentile)


def _qparams(observer: Observer, dtype: str, method: str, percentile: float) -> QParams:
    if isinstance(observer, HistogramObserver):
        if method == "percentile":
            return observer.qparams(dtype, method=method, percentile=percentile)
        return observer.qparams(dtype, method=method)
    return observer.qparams(dtype)


def _fastest_activation_type(
    build: Callable[..., tuple[onnx.ModelProto, StaticPlan, int]], notes: list[str]
) -> str:
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


def quantize_static(
    model: onnx.ModelProto,
    data: CalibrationData,
    config: QuantizeConfig | None = None,
    *,
    on_batch: Callable[[int, int], None] | None = None,
    on_search: Callable[[int, int], None] | None = None,
    goal: FidelityGoal | None = None,
    keep_float: Mapping[str, str] | None = None,
) -> QuantizeResult:
    """Quantize ``model`` to int8 QDQ, calibrating activation ranges on ``data``.

    With ``config.min_fidelity`` set, the nodes whose quantization costs the most output
    fidelity are kept float until the target is met (``quanta.graph.sensitivity``).

    Args:
        model: a float ONNX model (opset >= 13; older ones are upgraded by ``load_model``).
        data: calibration samples, one array per model input.
        config: options; ``per_channel`` and ``activation_type`` apply.
        on_batch: progress callback ``(batches_done, total)`` during calibration.
        goal: judge fidelity on these samples with this metric and target instead of
            ``config.min_fidelity`` on held-out calibration samples (``quanta.graph.auto``).
        keep_float: nodes to leave float whatever they cost, name -> reason.

    Returns:
        The quantized model and the nodes left float with the reason for each.
    """
    config = config or QuantizeConfig()
    model = prepare(model)
    plan = plan_static(model, exclude=dict(keep_float or {}))
    if not plan.plans:
        raise ModelError("no node of this model can be quantized (no Conv, Gemm or MatMul found)")
    mean_axes = (
        {
            node.input[0]: MEAN_AXIS[node.op_type]
            for node in model.graph.node
            if node.name in plan.plans
            and node.op_type in MEAN_AXIS
            and plan.plans[node.name].weights
        }
        if config.bias_correction
        else {}
    )
    observed = (
        plan.possible_sources(model)
        if config.min_fidelity is not None or goal is not None or keep_float
        else plan.calibrated_tensors()
    )
    ranges, means = collect_statistics(
        model, observed, data, channel_means=mean_axes,
        make_observer=observer_factory(config), on_batch=on_batch, workers=config.workers,
    )  # fmt: skip
    exclude = mismatched_concats(model, plan, ranges)
    exclude.update(keep_float or {})
    if exclude:
        exclude.update(_readers_of(model, plan, exclude))
        plan = plan_static(model, exclude=exclude)
    input_means = {name: obs.mean() for name, obs in means.items()}
    prepared = model
    # "auto" choices start from min-max / int8 and are settled below by measurement.
    choice: dict[str, str] = {
        "method": "minmax" if config.method == "auto" else config.method,
        "activation_type": "int8" if config.activation_type == "auto" else config.activation_type,
    }

    weights: dict[tuple[str, int | None], tuple[np.ndarray, QParams]] = {}  # same in every build
    reduced = config.weight_range == "reduced" or (
        config.weight_range == "auto" and int8_pairs_saturate()
    )

    def build(extra: dict[str, str], **override: str) -> tuple[onnx.ModelProto, StaticPlan, int]:
        opts = {**choice, **override}
        out = onnx.ModelProto()
        out.CopyFrom(prepared)
        p = plan_static(out, exclude={**exclude, **extra}) if extra or exclude else plan
        qp = {
            t: _qparams(ranges[src], opts["activation_type"], opts["method"], config.percentile)
            for t, src in p.source.items()
        }
        n = apply_qdq(
            out, p, qp, per_channel=config.per_channel, input_means=input_means,
            weight_cache=weights, reduced_weights=reduced,
        )  # fmt: skip
        # nodes that compute in float still store int8 weights (what the search measures ships)
        compress_float_weights(out, per_channel=config.per_channel, input_means=input_means)
        return out, p, n

    notes: list[str] = []
    if reduced:
        notes.append(
            "weights in 7 bits ([-64, 64]): "
            + ("--weight-range reduced" if config.weight_range == "reduced" else
               "this CPU has AVX2 but no VNNI, where ONNX Runtime's u8 x s8 kernels add pairs of "
               "products in saturating int16 (full-range weights could overflow it)")
        )  # fmt: skip
    if config.activation_type == "auto":
        choice["activation_type"] = _fastest_activation_type(build, notes)
    feeds = dict(goal.feeds) if goal is not None else data.head(prepared, config.holdout_samples)
    n_feed = len(next(iter(feeds.values())))
    reference: list[np.ndarray] = []
    target = goal.target if goal is not None else config.min_fidelity
    if config.method == "auto" or target is not None:
        reference = run_model(prepared, feeds)
    if config.method == "auto":
        scores = {
            m: mean_cosine(run_model(build({}, method=m)[0], feeds), reference)
            for m in AUTO_METHODS
        }
        choice["method"] = max(AUTO_METHODS, key=lambda m: scores[m])  # ties: first listed
        notes.append(
            f"method {choice['method']} chosen by output fidelity on {n_feed} held-out samples ("
            + ", ".join(f"{m} {v:.4f}" for m, v in scores.items())
            + ")"
        )
    model, plan, corrected = build({})
    if target is not None:
        # Every node that computes (not the value movers, which follow their input's grid).
        candidates = [
            n.name for n in prepared.graph.node
            if n.name in plan.plans and plan.plans[n.name].output != "shared"
        ]  # fmt: skip
        where = goal.where if goal is not None else f"{n_feed} held-out calibration samples"
        measure = goal.measure if goal is not None else "mean output cosine to float"
        fallback = search_float_nodes(
            lambda extra: build(extra)[0], candidates, list(plan.plans), feeds, reference,
            target=target, on_step=on_search, max_float=config.max_float,
            metric=goal.metric if goal is not None else None, where=where,
            cost=goal.cost if goal is not None else None,
        )  # fmt: skip
        if fallback.kept_float:
            model, plan, corrected = build(fallback.kept_float)
        notes.append(
            f"fidelity on {where} ({measure}): {fallback.fidelity_before:.4f} fully int8"
            + (
                f", {fallback.fidelity_after:.4f} with {len(fallback.kept_float)} node(s) kept "
                f"float (target {target:g}, {fallback.evaluations} evaluations)"
                if fallback.kept_float
                else f" (target {target:g} met)"
            )
        )
    if config.compact:
        compact_qdq(model)
    onnx.checker.check_model(model)
    notes.insert(
        0,
        f"calibrated {len(plan.calibrated_tensors())} activation tensors on {data.count} samples "
        f"({choice['method']}, {choice['activation_type']} activations)",
    )
    if corrected:
        notes.insert(1, f"bias correction applied to {corrected} layers")
    return QuantizeResult(model, plan.float_nodes, notes)


def apply_qdq(
    model: onnx.ModelProto,
    plan: StaticPlan,
    qparams: dict[str, QParams],
    *,
    per_channel: bool,
    input_means: Mapping[str, np.ndarray] | None = None,
    weight_cache: dict[tuple[str, int | None], tuple[np.ndarray, QParams]] | None = None,
    reduced_weights: bool = False,
) -> int:
    """Rewrite ``model`` in place: fused activations out, int8 weights, QDQ pairs in.

    With ``input_means`` (per-channel means of weighted nodes' inputs), biases are corrected for
    the weight rounding error (``quanta.graph.bias_correction``). Returns how many were.
    """
    input_means = input_means or {}
    corrected = 0
    index = GraphIndex(model)
    names = Names(model)
    graph = model.graph
    new_inits: list[onnx.TensorProto] = []
    head: list[onnx.NodeProto] = []  # weight DQs and QDQ of graph inputs go first
    absorbed = set(plan.fused.values())
    by_name = {node.name: node for node in graph.node}

    def add_dequantized(q: np.ndarray, qp: QParams, base: str) -> str:
        q_name = names.fresh(f"{base}_q")
        new_inits.append(numpy_helper.from_array(q, q_name))
        dq, inits = dequantize_node(q_name, qp, names.fresh(f"{base}_dq"), base, names)
        new_inits.extend(inits)
        head.append(dq)
        return dq.output[0]

    for node in graph.node:
        op_plan = plan.plans.get(node.name)
        if op_plan is None:
            continue
        if node.name in plan.fused:
            node.output[0] = by_name[plan.fused[node.name]].output[0]
        weight_qp: QParams | None = None
        shift = None
        for i, axis in op_plan.weights:
            w = index.constant(node.input[i])
            key = (node.input[i], axis if per_channel else None)
            if weight_cache is not None and key in weight_cache:
                q, weight_qp = weight_cache[key]
            else:
                q, weight_qp = quantize_weight(w, key[1], reduced=reduced_weights)
                if weight_cache is not None:
                    weight_cache[key] = (q, weight_qp)
            if node.input[0] in input_means and i == 1:
                shift_key = ("shift:" + node.name, None)
                if weight_cache is not None and shift_key in weight_cache:
                    shift = weight_cache[shift_key][0]
                else:
                    mean = input_means[node.input[0]]
                    shift = bias_shift(node, w, dequantize(q, weight_qp), mean)
                    if weight_cache is not None and shift is not None:
                        weight_cache[shift_key] = (shift, weight_qp)
            node.input[i] = add_dequantized(q, weight_qp, node.input[i])
        bias_index = op_plan.bias
        if shift is not None and bias_index is None and node.op_type in ("Conv", "Gemm"):
            # A layer without bias gets one to carry the correction.
            while len(node.input) < 3:
                node.input.append("")
            bias_index = 2
        if bias_index is not None and weight_qp is not None:
            name = node.input[bias_index]
            b = index.constant(name).astype(np.float64) if name else np.zeros(len(shift))  # type: ignore[arg-type]
            if shift is not None:
                b = b + shift
                corrected += 1
            q, bias_qp = quantize_bias(b, qparams[node.input[0]].scale, weight_qp)
            node.input[bias_index] = add_dequantized(
                q, bias_qp, name or names.fresh(f"{node.name}_bias")
            )

    def qdq(tensor: str, source_name: str, dest: str) -> list[onnx.NodeProto]:
        inits, s, z = qparams_initializers(qparams[tensor], tensor, names)
        new_inits.extend(inits)
        q_name = names.fresh(f"{tensor}_q")
        return [
            helper.make_node("QuantizeLinear", [source_name, s, z], [q_name],
                             name=names.fresh(f"{tensor}_Q")),
            helper.make_node("DequantizeLinear", [q_name, s, z], [dest],
                             name=names.fresh(f"{tensor}_DQ")),
        ]  # fmt: skip

    graph_inputs = set(index.graph_inputs)
    for tensor in qparams:
        if tensor in graph_inputs:
            dest = names.fresh(f"{tensor}_dq")
            for user in index.consumers[tensor]:
                for k, name in enumerate(user.input):
                    if name == tensor:
                        user.input[k] = dest
            head.extend(qdq(tensor, tensor, dest))
    body: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name in absorbed:
            continue
        body.append(node)
        for k, out in enumerate(node.output):
            if out in qparams and out not in graph_inputs:
                pre = names.fresh(f"{out}_pre")
                node.output[k] = pre
                body.extend(qdq(out, pre, out))
    del graph.node[:]
    graph.node.extend(head + body)
    graph.initializer.extend(new_inits)
    del graph.value_info[:]
    remove_unused(model)
    return corrected
