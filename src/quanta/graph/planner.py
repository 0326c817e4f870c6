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
from quanta.graph.result import FloatNode

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


def plan_static(
    model: onnx.ModelProto,
    *,
    exclude: Collection[str] = (),
    float_outputs: Collection[str] = (),
) -> StaticPlan:
    """Plan every node of a prepared model (see ``quanta.graph.prepare``).

    Args:
        exclude: names of nodes to keep float (a dict maps each to the reason shown).
        float_outputs: tensors an int8 node should produce in float32 rather than int8 (e.g.
            the logits: ONNX Runtime's QGemm writes float32 directly, at no extra cost).
    """
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
                plan.float_nodes.append(
                    FloatNode(node.name, node.op_type, KEPT_FLOAT[node.op_type])
                )
            elif node.op_type not in FLOAT_IS_FINE and node.domain in ("", "ai.onnx"):
                reason = f"quanta has no int8 handler for {node.op_type}"
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


def exclude_reason(exclude: Collection[str], name: str) -> str:
    if isinstance(exclude, dict):
        return str(exclude[name])
    return "kept float on request"
