"""Static quantization planning: which nodes run in int8 and which tensors get which range.

The planner walks the graph in topological order and asks each op's handler for an ``OpPlan``.
A quantized tensor takes the calibrated range of a *source* tensor: its own, or, for ops that
only move values (MaxPool, Reshape, ...), the range of their input, so that no requantization is
needed. ``exclude`` names nodes to keep float (decided after calibration, e.g. a Concat of
mismatched ranges, or by the accuracy-aware search).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops import FLOAT_IS_FINE, KEPT_FLOAT, REGISTRY, OpPlan, fusable_activation
from quanta.graph.result import FloatKind, FloatNode, FloatReason
from quanta.opfacts import FACTS

__all__ = ["StaticPlan", "plan_static"]


@dataclass
class StaticPlan:
    """Attributes:
    plans: plan of each quantized node, by node name.
    source: quantized tensor -> the tensor whose calibrated range it takes.
    fused: quantized node name -> the Relu/Clip node it absorbs.
    float_nodes: nodes left float, with the reason.
    """

    plans: dict[str, OpPlan] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    fused: dict[str, str] = field(default_factory=dict)
    float_nodes: list[FloatNode] = field(default_factory=list)

    def calibrated_tensors(self) -> list[str]:
        return sorted(set(self.source.values()))

    def possible_sources(self, model: onnx.ModelProto) -> list[str]:
        """Every tensor that could need its own range if some planned nodes were kept float:
        the calibrated ones, plus the activation inputs and outputs of every planned node."""
        by_name = {n.name: n for n in model.graph.node}
        names = set(self.source.values())
        for name, op_plan in self.plans.items():
            node = by_name[name]
            names.update(node.input[i] for i in op_plan.activations)
            last = by_name[self.fused[name]] if name in self.fused else node
            names.update(o for o in last.output if o)
        return sorted(names)


# Ops whose int8 kernel can write float32 directly (QGemm, MatMulIntegerToFloat): when no int8
# consumer reads their output, it stays float32 instead of paying a requantization and a
# DequantizeLinear for nothing.
FLOAT_OUTPUT_OK = frozenset(op for op, facts in FACTS.items() if facts.float_output)
# Ops that gain nothing from int8 unless their output feeds an int8 consumer.
USEFUL_ONLY_IF_READ = frozenset(op for op, facts in FACTS.items() if facts.needs_int8_reader)
UNREAD = FloatReason(
    "kept float: no int8 consumer reads its output, so int8 would add error and buy nothing",
    FloatKind.UNREAD,
)


def plan_static(
    model: onnx.ModelProto,
    *,
    exclude: Collection[str] = (),
    float_outputs: Collection[str] = (),
    prune: bool = True,
) -> StaticPlan:
    """Plan every node of a prepared model (see ``quanta.graph.prepare``).

    After the first pass, quantization that nothing uses is pruned until the plan is stable:
    a Gemm/MatMul whose output no int8 node reads writes float32 (the logits, or a projection
    followed by a float bias add and LayerNorm in a transformer), and an Add/Mul/Concat/pool
    whose output no int8 node reads stays float altogether (a residual add before a LayerNorm
    would otherwise squeeze a wide-range sum onto 8 bits for no speed gain). So does a mover
    (Reshape, Transpose, ...) whose output no int8 node reads: a CTC reader's logits reshaped
    into the graph output are then written float32 by their Gemm, not rounded to 8 bits, where
    two close classes would swap.

    Args:
        exclude: names of nodes to keep float (a dict maps each to the reason shown).
        float_outputs: tensors an int8 node should produce in float32 rather than int8.
        prune: drop the quantization nothing reads (off for QAT export, which mirrors the
            points where training quantized, the logits included).
    """
    by_name = {n.name: n for n in model.graph.node}
    reasons = {name: exclude_reason(exclude, name) for name in exclude}
    floats = set(float_outputs)
    while True:
        plan = _plan_once(model, reasons, floats)
        if not prune:
            return plan
        read: set[str] = set()
        for name, op_plan in plan.plans.items():
            node = by_name[name]
            read.update(node.input[i] for i in op_plan.activations)
            if op_plan.output == "shared" or op_plan.requires_quantized_input:
                read.add(node.input[0])  # a mover or pool reads its input in int8
        changed = False
        for name in plan.plans:
            node = by_name[name]
            last = by_name[plan.fused[name]] if name in plan.fused else node
            outs = [o for o in last.output if o and o in plan.source]
            if not outs or any(o in read for o in outs):
                continue
            if node.op_type in FLOAT_OUTPUT_OK:
                floats.update(outs)
                changed = True
            elif (
                node.op_type in USEFUL_ONLY_IF_READ or plan.plans[name].output == "shared"
            ) and name not in reasons:
                reasons[name] = UNREAD
                changed = True
        if not changed:
            return plan


def _plan_once(
    model: onnx.ModelProto, exclude: dict[str, str], float_outputs: set[str]
) -> StaticPlan:
    index = GraphIndex(model)
    plan = StaticPlan()
    absorbed: set[str] = set()
    for node in model.graph.node:
        if node.name in absorbed:
            continue
        if node.name in exclude:
            plan.float_nodes.append(
                FloatNode(node.name, node.op_type, exclude_reason(exclude, node.name))
            )
            continue
        handler = REGISTRY.get(node.op_type)
        if handler is None:
            if node.op_type in KEPT_FLOAT:
                reason = FloatReason(KEPT_FLOAT[node.op_type], FloatKind.BY_DESIGN)
                plan.float_nodes.append(FloatNode(node.name, node.op_type, reason))
            elif node.op_type not in FLOAT_IS_FINE and node.domain in ("", "ai.onnx"):
                reason = FloatReason(
                    f"quanta has no int8 handler for {node.op_type}", FloatKind.NO_HANDLER
                )
                plan.float_nodes.append(FloatNode(node.name, node.op_type, reason))
            continue
        op_plan = handler(node, index)
        if isinstance(op_plan, str):
            plan.float_nodes.append(FloatNode(node.name, node.op_type, op_plan))
            continue
        if op_plan.requires_quantized_input and node.input[0] not in plan.source:
            continue
        for i in op_plan.activations:
            plan.source.setdefault(node.input[i], node.input[i])
        outputs = [o for o in node.output if o]
        if op_plan.fuse_relu:
            activation = fusable_activation(node, index)
            assert activation is not None  # the handler checked it
            if activation.output[0] not in float_outputs:
                # a float output keeps its activation as a float op
                absorbed.add(activation.name)
                plan.fused[node.name] = activation.name
                outputs = [activation.output[0]]
        if op_plan.output == "own":
            for out in outputs:
                if out not in float_outputs:
                    plan.source[out] = out
        elif op_plan.output == "shared":
            for out in outputs:
                plan.source[out] = plan.source[node.input[0]]
        plan.plans[node.name] = op_plan
    return plan


def exclude_reason(exclude: Collection[str], name: str) -> str:  # noqa: D103
    if isinstance(exclude, dict):
        reason = exclude[name]
        return reason if isinstance(reason, str) else str(reason)  # a FloatReason keeps its kind
    return FloatReason("kept float on request", FloatKind.REQUESTED)
