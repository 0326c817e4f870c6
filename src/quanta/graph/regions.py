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
from quanta.graph.result import FloatKind, FloatReason

__all__ = ["int8_regions", "region_excess", "slower_regions"]


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


def slower_regions(
    model: onnx.ModelProto,
    plan: StaticPlan,
    float_ms: Mapping[str, float],
    int8_ms: Mapping[str, float],
    floor: float,
) -> tuple[dict[str, FloatReason], int]:
    """Each quantized node of a region whose nodes took longer in int8 (Q/DQ included) than in
    float by more than ``floor`` ms, with the region's figures as its reason; and how many
    regions that is. (No ratio margin: the latency check asks only once the whole model
    measured slower than float, and a region's net loss is what keeping it float saves.)"""
    out: dict[str, FloatReason] = {}
    count = 0
    for region in int8_regions(model, plan):
        q, f = region_excess(region, float_ms, int8_ms)
        if q - f <= floor:
            continue
        # a node ONNX Runtime fused into a float neighbour's kernel has no float time
        fused = any(n not in float_ms for n in region if n in plan.plans)
        inside = ", part of it inside a neighbour's kernel" if fused else ""
        why = FloatReason(
            f"kept float for speed: its int8 region ({len(region)} node(s) from {region[0]!r}) "
            f"took {q:.3f} ms at batch 1 with its Q/DQ, {f:.3f} ms in float{inside} (ONNX "
            "Runtime's profiler, this CPU)",
            FloatKind.SPEED,
        )
        out.update((n, why) for n in region if n in plan.plans)
        count += 1
    return out, count
