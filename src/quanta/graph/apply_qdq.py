"""The static rewrite: a planned float graph becomes QDQ, in place.

Three steps, in this order because the names they hand out must come out the same every time
(the model bytes are compared across builds and releases):

1. per planned node, in graph order: the producer of an absorbed Relu/Clip takes its output
   name; weights become int8 initializers + DequantizeLinear; biases int32 (``s_in * s_w``),
   corrected for the weight rounding error when the input's channel means are known;
2. each quantized graph input gets ``QuantizeLinear -> DequantizeLinear`` at the head, its
   readers moved to ``T_dq``;
3. each other quantized activation ``T``: the producer writes ``T_pre``, the pair writes ``T``,
   so consumers and graph outputs keep their names.

Then a node the plan keeps float reads its int8 inputs through DequantizeLinears of its own,
or ONNX Runtime would fuse it back into an integer kernel (``quanta.graph.float_readers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from quanta.graph.bias_correction import MEAN_AXIS, bias_shift
from quanta.graph.float_readers import float_inputs_apart
from quanta.graph.index import GraphIndex
from quanta.graph.ops import OpPlan
from quanta.graph.planner import StaticPlan
from quanta.graph.qdq import qdq_pair
from quanta.graph.rewrite import (
    Names,
    dequantize_node,
    quantize_bias,
    quantize_weight,
    remove_unused,
)
from quanta.quant import QParams, dequantize

__all__ = ["WeightCache", "apply_qdq"]

# (weight name, axis or None) -> its int8 values and grid; ("shift:" + node, None) -> that
# node's bias correction. Shared by the builds of one quantize_static call, whose weights agree.
WeightCache = dict[tuple[str, int | None], tuple[np.ndarray, QParams]]


class _Additions:
    """What the rewrite adds: fresh names, new initializers, and the nodes that go first
    (weight DequantizeLinears and the QDQ of graph inputs)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.names = Names(model)
        self.inits: list[onnx.TensorProto] = []
        self.head: list[onnx.NodeProto] = []
        # (weight name, axis) -> the float tensor its DequantizeLinear writes
        self.weights: dict[tuple[str, int | None], str] = {}

    def shared_weight(self, key: tuple[str, int | None], q: np.ndarray, qp: QParams) -> str:
        """The weight ``key`` dequantized, written once however many nodes read it.

        NOTE: an unrolled recurrent layer reads one weight in every step; a copy per reader
        made captcha_crnn's int8 file 3.6x larger than its float one.
        """
        if key not in self.weights:
            self.weights[key] = self.dequantized(q, qp, key[0])
        return self.weights[key]

    def dequantized(self, q: np.ndarray, qp: QParams, base: str) -> str:
        """``q`` as an initializer read by a new DequantizeLinear; returns the float tensor."""
        q_name = self.names.fresh(f"{base}_q")
        self.inits.append(numpy_helper.from_array(q, q_name))
        dq, inits = dequantize_node(q_name, qp, self.names.fresh(f"{base}_dq"), base, self.names)
        self.inits.extend(inits)
        self.head.append(dq)
        return dq.output[0]

    def qdq(self, qp: QParams, tensor: str, source: str, dest: str) -> list[onnx.NodeProto]:
        nodes, inits = qdq_pair(qp, tensor, self.names, source=source, dest=dest)
        self.inits.extend(inits)
        return nodes


def apply_qdq(
    model: onnx.ModelProto,
    plan: StaticPlan,
    qparams: dict[str, QParams],
    *,
    per_channel: bool,
    input_means: Mapping[str, np.ndarray] | None = None,
    weight_cache: WeightCache | None = None,
    reduced_weights: bool = False,
) -> int:
    """Rewrite ``model`` in place: fused activations out, int8 weights, QDQ pairs in.

    With ``input_means`` (per-channel means of weighted nodes' inputs), biases are corrected for
    the weight rounding error (``quanta.graph.bias_correction``). Returns how many were.
    """
    index = GraphIndex(model)
    add = _Additions(model)
    graph = model.graph
    by_name = {node.name: node for node in graph.node}
    corrected = 0
    for node in graph.node:
        op_plan = plan.plans.get(node.name)
        if op_plan is None:
            continue
        if node.name in plan.fused:
            node.output[0] = by_name[plan.fused[node.name]].output[0]
        corrected += _quantize_constants(
            node, op_plan, index, add, qparams, per_channel=per_channel,
            input_means=input_means or {}, cache=weight_cache, reduced=reduced_weights,
        )  # fmt: skip
    graph_inputs = set(index.graph_inputs)
    _quantize_graph_inputs(index, add, qparams, graph_inputs)
    body = _quantize_outputs(graph.node, set(plan.fused.values()), add, qparams, graph_inputs)
    del graph.node[:]
    graph.node.extend(add.head + body)
    graph.initializer.extend(add.inits)
    float_inputs_apart(model, plan, add.names)  # kept float in ONNX Runtime too
    del graph.value_info[:]
    remove_unused(model)
    return corrected


def _quantize_constants(
    node: onnx.NodeProto,
    op_plan: OpPlan,
    index: GraphIndex,
    add: _Additions,
    qparams: Mapping[str, QParams],
    *,
    per_channel: bool,
    input_means: Mapping[str, np.ndarray],
    cache: WeightCache | None,
    reduced: bool,
) -> int:
    """``node``'s weights to int8 and its bias to int32; returns 1 if the bias was corrected."""
    weight_qp: QParams | None = None
    shift = None
    for i, axis in op_plan.weights:
        w = index.constant(node.input[i])
        key = (node.input[i], axis if per_channel else None)
        q, weight_qp = _int8_weight(w, key, cache, reduced)
        if node.input[0] in input_means and i == 1:
            shift = _bias_shift(node, w, q, weight_qp, input_means[node.input[0]], cache)
        node.input[i] = add.shared_weight(key, q, weight_qp)
    bias_index = op_plan.bias
    if shift is not None and bias_index is None and node.op_type in MEAN_AXIS:
        # A layer without bias gets one to carry the correction.
        while len(node.input) < 3:
            node.input.append("")
        bias_index = 2
    if bias_index is None or weight_qp is None:
        return 0
    name = node.input[bias_index]
    b = index.constant(name).astype(np.float64) if name else np.zeros(len(shift))  # type: ignore[arg-type]
    if shift is not None:
        b = b + shift
    q, bias_qp = quantize_bias(b, qparams[node.input[0]].scale, weight_qp)
    node.input[bias_index] = add.dequantized(
        q, bias_qp, name or add.names.fresh(f"{node.name}_bias")
    )
    return int(shift is not None)


def _int8_weight(
    w: np.ndarray, key: tuple[str, int | None], cache: WeightCache | None, reduced: bool
) -> tuple[np.ndarray, QParams]:
    """``w`` quantized along ``key``'s axis, once per quantize_static call."""
    if cache is not None and key in cache:
        return cache[key]
    q, qp = quantize_weight(w, key[1], reduced=reduced)
    if cache is not None:
        cache[key] = (q, qp)
    return q, qp


def _bias_shift(
    node: onnx.NodeProto,
    w: np.ndarray,
    q: np.ndarray,
    weight_qp: QParams,
    mean: np.ndarray,
    cache: WeightCache | None,
) -> np.ndarray | None:
    """The bias correction of ``node`` (``quanta.graph.bias_correction``), computed once per
    quantize_static call: every build rounds the weights the same way."""
    key = ("shift:" + node.name, None)
    if cache is not None and key in cache:
        return cache[key][0]
    shift = bias_shift(node, w, dequantize(q, weight_qp), mean)
    if cache is not None and shift is not None:
        cache[key] = (shift, weight_qp)
    return shift


def _quantize_graph_inputs(
    index: GraphIndex, add: _Additions, qparams: Mapping[str, QParams], graph_inputs: set[str]
) -> None:
    for tensor in qparams:
        if tensor in graph_inputs:
            dest = add.names.fresh(f"{tensor}_dq")
            for user in index.consumers[tensor]:
                for k, name in enumerate(user.input):
                    if name == tensor:
                        user.input[k] = dest
            add.head.extend(add.qdq(qparams[tensor], tensor, tensor, dest))


def _quantize_outputs(
    nodes: Iterable[onnx.NodeProto],
    absorbed: set[str],
    add: _Additions,
    qparams: Mapping[str, QParams],
    graph_inputs: set[str],
) -> list[onnx.NodeProto]:
    """The graph's nodes without the absorbed activations, each quantized output followed by
    its QDQ pair."""
    body: list[onnx.NodeProto] = []
    for node in nodes:
        if node.name in absorbed:
            continue
        body.append(node)
        for k, out in enumerate(node.output):
            if out in qparams and out not in graph_inputs:
                pre = add.names.fresh(f"{out}_pre")
                node.output[k] = pre
                body.extend(add.qdq(qparams[out], out, pre, out))
    return body
