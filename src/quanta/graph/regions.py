"""Int8 regions: the connected groups of nodes a static plan runs in int8.

A Q/DQ pair between two int8 neighbours costs nothing (ONNX Runtime fuses it into their integer
kernels); one at an int8/float boundary is a real QuantizeLinear or DequantizeLinear. So whether
int8 pays is a property of a region, not of one node: a region is worth keeping int8 when the
time its kernels save exceeds what its boundary conversions cost. The latency check
(``quanta.graph.latency``) keeps float the regions whose int8 time, Q/DQ included, is above
their float time.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from quanta.graph.planner import StaticPlan

__all__ = ["int8_regions", "region_excess"]


def int8_regions(model: onnx.ModelProto, plan: StaticPlan) -> list[list[str]]:
    """The quantized nodes of ``plan`` grouped into regions, in graph order: two nodes share a
    region when one reads a quantized output of the other (through a fused Relu/Clip). Each
    region lists its quantized nodes, then the Relu/Clip nodes they absorb."""
    parent = {name: name for name in plan.plans}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    by_name = {n.name: n for n in model.graph.node}
    writer: dict[str, str] = {}  # quantized tensor -> the quantized node writing it
    for name, op_plan in plan.plans.items():
        if op_plan.output is None:
            continue  # a float output (QGemm writing float32): its readers see float
        last = by_name[plan.fused.get(name, name)]
        writer.update((out, name) for out in last.output if out)
    for node in model.graph.node:
        if node.name not in plan.plans:
            continue
        for tensor in node.input:
            if tensor in writer:
                parent[find(node.name)] = find(writer[tensor])
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.name in plan.plans:
            groups.setdefault(find(node.name), []).append(node.name)
    return [
        [*members, *(plan.fused[m] for m in members if m in plan.fused)]
        for members in groups.values()
    ]


def region_excess(
    region: list[str], float_ms: Mapping[str, float], int8_ms: Mapping[str, float]
) -> tuple[float, float]:
    """``(int8 ms, float ms)`` of a region's nodes at batch 1, each node's int8 time with the
    Q/DQ nodes its quantization added (``quanta.graph.latency``); nodes never profiled count 0."""
    return (
        sum(int8_ms.get(n, 0.0) for n in region),
        sum(float_ms.get(n, 0.0) for n in region),
    )
