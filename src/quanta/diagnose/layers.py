"""Per-tensor diagnostics of a quantized model against its float reference.

For each activation tensor the quantized model quantizes (each QuantizeLinear):

- its grid: scale, zero point, dtype, and the real range that grid covers;
- the float model's observed range of that tensor on the calibration samples, and the share of
  its values that fall outside the grid (clipped);
- SQNR (dB) of the quantized model's tensor against the float model's, both on the same samples
  (the quantized model's values come from ONNX Runtime running the QDQ graph, which matches its
  integer kernels within a rounding tie: see ``quanta verify``). This includes the error
  arriving from earlier layers;
- sensitivity: how much the model output's mean cosine similarity to float drops when only
  this layer is quantized (its weights as stored, its output on its grid), everything else
  float. The layers that hurt most show first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from quanta.errors import ModelError
from quanta.graph.compact import expand_qdq
from quanta.graph.prepare import prepare
from quanta.graph.qdq import qdq_pair
from quanta.graph.rewrite import Names
from quanta.graph.weight_only import (
    calibrated_int8,
    computes_int8,
    decoded_weights,
    run_time_int8,
)
from quanta.quant import QParams, dequantize
from quanta.runtime import mean_cosine, run_model, session_with_outputs
from quanta.runtime.batching import SessionLike, run_batched

__all__ = ["LayerReport", "inspect_layers"]

_DTYPE_NAMES = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}


@dataclass(frozen=True)
class LayerReport:
    tensor: str  # the float model's name of the tensor
    producer: str  # node writing it in the quantized model ("" for a graph input)
    op_type: str
    dtype: str
    scale: float
    zero_point: int
    grid_min: float
    grid_max: float
    observed_min: float
    observed_max: float
    clipped_fraction: float
    sqnr_db: float
    sensitivity: float  # drop in mean output cosine when only this layer is quantized

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Site:
    q_node: onnx.NodeProto
    float_name: str
    producer: onnx.NodeProto | None
    qp: QParams
    weights: dict[int, np.ndarray]  # producer input index -> dequantized constant


def _sites(plain: onnx.ModelProto, float_names: set[str]) -> list[_Site]:
    graph = plain.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    sites = []
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in consts:
            continue
        dq_outputs = [d.output[0] for d in readers.get(q.output[0], [])]
        candidates = [*dq_outputs, q.input[0]]
        float_name = next((c for c in candidates if c in float_names), None)
        if float_name is None:
            continue
        zp = consts.get(q.input[2]) if len(q.input) > 2 else None
        dtype = "uint8" if zp is None or zp.dtype == np.uint8 else "int8"
        scale = consts[q.input[1]]
        qp = QParams(scale, np.zeros((), np.int64) if zp is None else zp, dtype)
        p = producer.get(q.input[0])
        weights: dict[int, np.ndarray] = {}
        if p is not None:
            for k, name in enumerate(p.input):
                dq = producer.get(name)
                if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in consts:
                    continue
                w = consts[dq.input[0]]
                s, z = consts[dq.input[1]], consts[dq.input[2]]
                axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) if s.ndim else None
                wq = QParams(s, z, "int32" if w.dtype == np.int32 else "int8", axis)
                weights[k] = dequantize(w, wq)
        sites.append(_Site(q, float_name, p, qp, weights))
    return sites


def _grid_range(qp: QParams) -> tuple[float, float]:
    s, z = float(qp.scale), int(qp.zero_point)
    return s * (qp.qmin - z), s * (qp.qmax - z)


def _sqnr_db(reference: np.ndarray, quantized: np.ndarray) -> float:
    signal = float(np.sum(np.square(reference, dtype=np.float64)))
    noise = float(np.sum(np.square(reference.astype(np.float64) - quantized, dtype=np.float64)))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


def _only_this_layer(base: onnx.ModelProto, site: _Site) -> onnx.ModelProto:
    """``base`` (the prepared float model) with only ``site``'s layer quantized."""
    model = onnx.ModelProto()
    model.CopyFrom(base)
    names = Names(model)
    graph = model.graph
    if site.producer is not None and site.weights:
        node = next((n for n in graph.node if n.name == site.producer.name), None)
        if node is not None:
            for k, value in site.weights.items():
                if k < len(node.input):
                    name = names.fresh(f"{node.input[k] or node.name}_stored")
                    graph.initializer.append(
                        numpy_helper.from_array(value.astype(np.float32), name)
                    )
                    node.input[k] = name
    tensor = site.float_name
    pre = names.fresh(f"{tensor}_pre")
    is_input = tensor in {i.name for i in graph.input}
    # a graph input is quantized into ``pre``; any other tensor's producer writes ``pre`` instead
    source, dest = (tensor, pre) if is_input else (pre, tensor)
    qdq, inits = qdq_pair(site.qp, tensor, names, source=source, dest=dest)
    graph.initializer.extend(inits)
    if is_input:
        # readers of the input read the fake-quantized copy instead
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name == tensor:
                    node.input[k] = pre
        nodes = [*qdq, *graph.node]
    else:
        nodes = []
        for node in graph.node:
            for k, name in enumerate(node.output):
                if name == tensor:
                    node.output[k] = pre
                    nodes.append(node)
                    nodes.extend(qdq)
                    break
            else:
                nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _float_values(
    base: onnx.ModelProto, names: list[str], feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The float model's values of the tensors ``names`` (graph inputs straight from ``feeds``)."""
    inputs = {i.name for i in base.graph.input}
    wanted = [n for n in names if n not in inputs]
    session = session_with_outputs(base, wanted)
    values = dict(zip(wanted, _run_all(session, wanted, feeds), strict=True))
    values.update({n: np.asarray(feeds[n]) for n in names if n in inputs})
    return values


def _quantized_values(
    quantized: onnx.ModelProto,
    plain: onnx.ModelProto,
    sites: list[_Site],
    feeds: Mapping[str, np.ndarray],
    float_outputs: set[str],
) -> tuple[dict[str, str | None], dict[str, np.ndarray]]:
    """The quantized model's own values of the sites' tensors (the dequantized outputs): the
    DequantizeLinear output of each site's tensor (None where it has none), and their values."""
    dq_of = {}
    for site in sites:
        readers = [n for n in plain.graph.node if site.q_node.output[0] in n.input]
        dq_of[site.float_name] = next(
            (r.output[0] for r in readers if r.op_type == "DequantizeLinear"), None
        )
    exposed = [v for v in dq_of.values() if v]
    session = session_with_outputs(quantized, [v for v in exposed if v not in float_outputs])
    return dq_of, dict(zip(exposed, _run_all(session, exposed, feeds), strict=True))


def _run_all(
    session: SessionLike, names: list[str], feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """``names`` over every sample: in one call where the batch is dynamic (as before), in calls
    of the model's batch where its inputs fix one (``quanta.runtime.batching``)."""
    n = len(next(iter(feeds.values())))
    return run_batched(session, feeds, batch_size=n, names=names)


def _layer_report(
    site: _Site, float_value: np.ndarray, q_value: np.ndarray | None, sensitivity: float
) -> LayerReport:
    f = np.asarray(float_value, np.float32)
    lo, hi = _grid_range(site.qp)
    step = float(site.qp.scale)
    clipped = float(np.mean((f < lo - step / 2) | (f > hi + step / 2))) if f.size else 0.0
    sqnr = _sqnr_db(f, np.asarray(q_value, np.float32)) if q_value is not None else float("nan")
    return LayerReport(
        tensor=site.float_name,
        producer=site.producer.name if site.producer is not None else "",
        op_type=site.producer.op_type if site.producer is not None else "input",
        dtype=site.qp.dtype,
        scale=float(site.qp.scale),
        zero_point=int(site.qp.zero_point),
        grid_min=lo,
        grid_max=hi,
        observed_min=float(f.min()) if f.size else 0.0,
        observed_max=float(f.max()) if f.size else 0.0,
        clipped_fraction=clipped,
        sqnr_db=float(sqnr),
        sensitivity=float(max(sensitivity, 0.0)),
    )


def inspect_layers(
    quantized: onnx.ModelProto,
    reference: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    sensitivity_samples: int = 16,
    on_step: Callable[[str], None] | None = None,
) -> list[LayerReport]:
    """One ``LayerReport`` per quantized activation tensor, in graph order."""
    base = prepare(reference)
    float_names = {o for n in base.graph.node for o in n.output} | {
        i.name for i in base.graph.input
    }
    plain = expand_qdq(quantized)
    sites = _sites(plain, float_names)
    if not sites and not computes_int8(quantized) and (decoded := decoded_weights(quantized)):
        raise ModelError(
            "no quantized activation in this model to inspect: every layer computes in float, "
            f"its {decoded} int8-stored weight(s) decoded when the session "
            "starts; quanta bench MODEL --reference FLOAT.onnx --data DATA measures it against "
            "float"
        )
    if not sites and not calibrated_int8(quantized) and (dynamic := run_time_int8(quantized)):
        raise ModelError(
            f"no calibrated int8 activation in this model to inspect: its {dynamic} dynamic int8 "
            "op(s) measure their input's range on every run, the other layers compute in float; "
            "quanta bench MODEL --reference FLOAT.onnx --data DATA measures it against float"
        )
    if not sites:
        raise ModelError(
            "no quantized tensor of this model matches a tensor of the reference model; "
            "pass the float model it was quantized from"
        )
    if on_step:
        on_step("running the float model")
    float_values = _float_values(base, [s.float_name for s in sites], feeds)
    if on_step:
        on_step("running the quantized model")
    float_outputs = {o.name for o in base.graph.output}
    dq_of, q_values = _quantized_values(quantized, plain, sites, feeds, float_outputs)
    head = {k: np.asarray(v)[:sensitivity_samples] for k, v in feeds.items()}
    ref_out = run_model(base, head)
    reports = []
    for i, site in enumerate(sites):
        if on_step:
            on_step(f"sensitivity {i + 1}/{len(sites)}: {site.float_name}")
        # sensitivity: the drop in mean output cosine when only this layer is quantized
        alone = run_model(_only_this_layer(base, site), head)
        sensitivity = 1.0 - mean_cosine(alone, ref_out)
        q_value = q_values.get(dq_of[site.float_name] or "")
        reports.append(_layer_report(site, float_values[site.float_name], q_value, sensitivity))
    return reports
