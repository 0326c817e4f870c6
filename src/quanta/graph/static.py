"""Static (full-integer) quantization to QDQ: int8 weights and calibrated int8 activations.

The pass plans every node with its op handler, calibrates the activation tensors the plan needs
in one ONNX Runtime run, then rewrites the graph:

- a Relu after Conv/Gemm/MatMul is absorbed: the producer's output is quantized with the Relu's
  range (zero point at qmin), which clamps negatives as the Relu did;
- weights become int8 initializers + DequantizeLinear (symmetric, per output channel);
- biases become int32 with scale ``s_in * s_w`` + DequantizeLinear;
- each quantized activation ``T`` gets ``QuantizeLinear -> DequantizeLinear`` right after its
  producer; the producer writes ``T_prequant`` and the DequantizeLinear writes ``T``, so consumers
  and graph outputs keep their names.

ONNX Runtime then fuses the QDQ groups into integer kernels (QLinearConv, QGemm, int8 MaxPool).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph.calibrate import CalibrationData, collect_ranges
from quanta.graph.config import QuantizeConfig
from quanta.graph.index import GraphIndex
from quanta.graph.ops import FLOAT_IS_FINE, REGISTRY, OpPlan
from quanta.graph.prepare import prepare
from quanta.graph.result import FloatNode, QuantizeResult
from quanta.graph.rewrite import (
    Names,
    dequantize_node,
    qparams_initializers,
    quantize_bias,
    quantize_weight,
    remove_unused,
)
from quanta.quant import QParams

__all__ = ["apply_qdq", "plan_static", "quantize_static"]


def plan_static(
    model: onnx.ModelProto,
) -> tuple[dict[str, OpPlan], dict[str, str], list[FloatNode]]:
    """Plan each node; return (plans by node name, quantized tensor -> tensor whose range it
    uses, nodes left float)."""
    index = GraphIndex(model)
    plans: dict[str, OpPlan] = {}
    source: dict[str, str] = {}  # quantized tensor -> the tensor whose calibrated range it takes
    float_nodes: list[FloatNode] = []
    absorbed: set[str] = set()
    for node in model.graph.node:
        if node.name in absorbed:
            continue
        handler = REGISTRY.get(node.op_type)
        if handler is None:
            if node.op_type not in FLOAT_IS_FINE and node.domain in ("", "ai.onnx"):
                reason = f"quanta has no int8 handler for {node.op_type}"
                float_nodes.append(FloatNode(node.name, node.op_type, reason))
            continue
        plan = handler(node, index)
        if isinstance(plan, str):
            float_nodes.append(FloatNode(node.name, node.op_type, plan))
            continue
        if plan.requires_quantized_input and node.input[0] not in source:
            continue
        for i in plan.activations:
            source.setdefault(node.input[i], node.input[i])
        out = node.output[0]
        if plan.fuse_relu:
            relu = index.sole_consumer(out)
            assert relu is not None  # the handler checked it
            absorbed.add(relu.name)
            out = relu.output[0]
        if plan.output == "own":
            source[out] = out
        elif plan.output == "shared":
            source[out] = source[node.input[0]]
        plans[node.name] = plan
    return plans, source, float_nodes


def quantize_static(
    model: onnx.ModelProto,
    data: CalibrationData,
    config: QuantizeConfig | None = None,
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> QuantizeResult:
    """Quantize ``model`` to int8 QDQ, calibrating activation ranges (min-max) on ``data``.

    Args:
        model: a float ONNX model (opset >= 13; older ones are upgraded by ``load_model``).
        data: calibration samples, one array per model input.
        config: options; ``per_channel`` and ``activation_type`` apply.
        on_batch: progress callback ``(batches_done, total)`` during calibration.

    Returns:
        The quantized model and the nodes left float with the reason for each.
    """
    config = config or QuantizeConfig()
    model = prepare(model)
    plans, source, float_nodes = plan_static(model)
    if not plans:
        raise ModelError("no node of this model can be quantized (no Conv, Gemm or MatMul found)")
    ranges = collect_ranges(model, sorted(set(source.values())), data, on_batch=on_batch)
    act_type = config.activation_type
    qparams = {t: ranges[src].qparams(act_type) for t, src in source.items()}
    apply_qdq(model, plans, qparams, per_channel=config.per_channel)
    onnx.checker.check_model(model)
    notes = [f"calibrated {len(ranges)} activation tensors on {data.count} samples (min-max)"]
    return QuantizeResult(model, float_nodes, notes)


def apply_qdq(
    model: onnx.ModelProto,
    plans: dict[str, OpPlan],
    qparams: dict[str, QParams],
    *,
    per_channel: bool,
) -> None:
    index = GraphIndex(model)
    names = Names(model)
    graph = model.graph
    new_inits: list[onnx.TensorProto] = []
    head: list[onnx.NodeProto] = []  # weight DQs and QDQ of graph inputs go first
    absorbed: set[str] = set()

    for node in graph.node:
        plan = plans.get(node.name)
        if plan is None:
            continue
        if plan.fuse_relu:
            relu = index.sole_consumer(node.output[0])
            assert relu is not None
            node.output[0] = relu.output[0]
            absorbed.add(relu.name)
        weight_qp: QParams | None = None
        for i, axis in plan.weights:
            w = index.constant(node.input[i])
            q, weight_qp = quantize_weight(w, axis if per_channel else None)
            base = node.input[i]
            q_name = names.fresh(f"{base}_quantized")
            new_inits.append(numpy_helper.from_array(q, q_name))
            dq, inits = dequantize_node(
                q_name, weight_qp, names.fresh(f"{base}_dequantized"), base, names
            )
            new_inits.extend(inits)
            head.append(dq)
            node.input[i] = dq.output[0]
        if plan.bias is not None and weight_qp is not None:
            b = index.constant(node.input[plan.bias])
            in_qp = qparams[node.input[0]]
            q, bias_qp = quantize_bias(b, in_qp.scale, weight_qp)
            base = node.input[plan.bias]
            q_name = names.fresh(f"{base}_quantized")
            new_inits.append(numpy_helper.from_array(q, q_name))
            dq, inits = dequantize_node(
                q_name, bias_qp, names.fresh(f"{base}_dequantized"), base, names
            )
            new_inits.extend(inits)
            head.append(dq)
            node.input[plan.bias] = dq.output[0]

    def qdq(tensor: str, source_name: str, dest: str) -> list[onnx.NodeProto]:
        qp = qparams[tensor]
        q_name = names.fresh(f"{tensor}_quantized")
        inits, s, z = qparams_initializers(qp, tensor, names)
        new_inits.extend(inits)
        quant = helper.make_node(
            "QuantizeLinear",
            [source_name, s, z],
            [q_name],
            name=names.fresh(f"{tensor}_QuantizeLinear"),
        )
        deq = helper.make_node(
            "DequantizeLinear",
            [q_name, s, z],
            [dest],
            name=names.fresh(f"{tensor}_DequantizeLinear"),
        )
        return [quant, deq]

    body: list[onnx.NodeProto] = []
    graph_inputs = set(index.graph_inputs)
    for tensor in qparams:
        if tensor in graph_inputs:
            dest = names.fresh(f"{tensor}_dequantized")
            for user in index.consumers[tensor]:
                for k, name in enumerate(user.input):
                    if name == tensor:
                        user.input[k] = dest
            head.extend(qdq(tensor, tensor, dest))
    for node in graph.node:
        if node.name in absorbed:
            continue
        body.append(node)
        for k, out in enumerate(node.output):
            if out in qparams and out not in graph_inputs:
                pre = names.fresh(f"{out}_prequant")
                node.output[k] = pre
                body.extend(qdq(out, pre, out))
    del graph.node[:]
    graph.node.extend(head + body)
    graph.initializer.extend(new_inits)
    del graph.value_info[:]
    remove_unused(model)
