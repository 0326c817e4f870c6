"""Issue 14's acceptance bars, and the comparison table that ``benchmarks/wild_models.py`` writes.

A model passes a variant when its status is ok and:

- size: the int8 file is never larger than float (ratio float / int8 >= 1.0), and at least
  3.5x smaller where at least 90 % of the float weight bytes feed Conv, ConvTranspose, Gemm,
  MatMul, LSTM, GRU or Gather ("matmul-heavy", see ``weight_share``);
- answers: the task score is at least the metric's bar (``ANSWER_BARS``);
- speed: batch-1 latency at most float's (speed-up >= 1.0).

"vs ORT" compares the task score with ONNX Runtime's counterpart on the same model (quanta
static and auto against ``quantize_static``, dynamic against ``quantize_dynamic``); a peer
that failed counts as beaten.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

ANSWER_BARS = {"top1": 0.97, "text": 0.95, "detections": 0.95, "mask_iou": 0.97, "cosine": 0.99}
HEAVY_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "Gather"}
# single-input ops a weight may pass through on its way to a heavy op (exporters' habits)
_PASS_THROUGH = {"Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"}

VARIANTS = ("quanta_static", "quanta_dynamic", "quanta_auto", "ort_static", "ort_dynamic")
PEER = {"quanta_static": "ort_static", "quanta_auto": "ort_static", "quanta_dynamic": "ort_dynamic"}
LABELS = {
    "quanta_static": "quanta static (default)",
    "quanta_dynamic": "quanta --mode dynamic",
    "quanta_auto": "quanta --mode auto",
    "ort_static": "ORT quantize_static",
    "ort_dynamic": "ORT quantize_dynamic",
}

Row = Mapping[str, Any]  # one model: name, metric, heavy_share, variants {name: result}


def weight_share(model: Any) -> float:
    """Fraction of the float weight bytes (initializers and ``Constant`` nodes) that feed a
    heavy op, directly or through ``_PASS_THROUGH`` ops."""
    from onnx import numpy_helper

    sizes = {t.name: numpy_helper.to_array(t).nbytes for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            sizes[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).nbytes
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def heavy(name: str, depth: int = 0) -> bool:
        for node in consumers.get(name, []):
            if node.op_type in HEAVY_OPS:
                return True
            if node.op_type in _PASS_THROUGH and depth < 4 and heavy(node.output[0], depth + 1):
                return True
        return False

    total = sum(sizes.values())
    return sum(n for name, n in sizes.items() if heavy(name)) / total if total else 0.0


def checks(row: Row, variant: str) -> dict[str, bool] | None:
    """Which bars ``variant`` meets on ``row``'s model (None if it did not run to the end)."""
    r = row["variants"].get(variant)
    if not r or r["status"] != "ok" or r.get("score") is None:
        return None
    ratio, speedup = r["size_ratio"], r.get("speedup")
    size_bar = 3.5 if row["heavy_share"] >= 0.9 else 1.0
    peer = row["variants"].get(PEER.get(variant, ""))
    vs_ort = not peer or peer["status"] != "ok" or peer.get("score") is None
    return {
        "size": ratio >= size_bar,
        "answers": r["score"] >= ANSWER_BARS[row["metric"]],
        "speed": speedup is not None and speedup >= 1.0,
        "vs_ort": vs_ort or r["score"] >= peer["score"],  # type: ignore[index]
    }


def summary(rows: Sequence[Row], variant: str) -> dict[str, Any]:
    """Counts of models passing each bar, median speed-up, min size ratio, median quantize s."""
    ran = [row for row in rows if variant in row["variants"]]
    results = [row["variants"][variant] for row in ran]
    ok = [r for r in results if r["status"] == "ok"]
    passed = [c for row in ran if (c := checks(row, variant)) is not None]
    speedups = [r["speedup"] for r in ok if r.get("speedup") is not None]
    ratios = [r["size_ratio"] for r in ok if r.get("size_ratio") is not None]
    seconds = [r["quantize_s"] for r in results if r.get("quantize_s") is not None]

    def count(key: str) -> int:
        return sum(c[key] for c in passed)

    return {
        "models": len(ran),
        "ok": len(ok),
        "refused": sum(r["status"] == "refused" for r in results),
        "error": sum(r["status"] == "error" for r in results),
        "size": count("size"),
        "answers": count("answers"),
        "speed": count("speed"),
        "all_bars": sum(c["size"] and c["answers"] and c["speed"] for c in passed),
        "vs_ort": count("vs_ort") if variant in PEER else None,
        "median_speedup": statistics.median(speedups) if speedups else None,
        "min_size_ratio": min(ratios) if ratios else None,
        "median_quantize_s": statistics.median(seconds) if seconds else None,
    }


def _f(value: float | None, fmt: str, unit: str = "") -> str:
    return "-" if value is None else format(value, fmt) + unit


def markdown(rows: Sequence[Row], variants: Sequence[str]) -> list[str]:
    """The summary table (one line per variant), then one table row per model and variant."""
    lines = [
        "| variant | models | ok / refused / error | size bar | answers bar | speed bar "
        "| all three | answers >= ORT | median speed-up | min size ratio | median quantize s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        s = summary(rows, v)
        n = s["models"]
        vs = "-" if s["vs_ort"] is None else f"{s['vs_ort']}/{n}"
        lines.append(
            f"| {LABELS[v]} | {n} | {s['ok']} / {s['refused']} / {s['error']} "
            f"| {s['size']}/{n} | {s['answers']}/{n} | {s['speed']}/{n} | **{s['all_bars']}/{n}** "
            f"| {vs} | {_f(s['median_speedup'], '.2f', 'x')} "
            f"| {_f(s['min_size_ratio'], '.2f', 'x')} | {_f(s['median_quantize_s'], '.1f')} |"
        )
    lines += [
        "",
        "| model | metric (bar) | variant | status | size ratio | score | speed-up "
        "| int8 ms | float ms | quantize s | bars missed | message |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for v in variants:
            r = row["variants"].get(v)
            if r is None:
                continue
            c = checks(row, v)
            missed = "-" if c is None else ", ".join(k for k, ok in c.items() if not ok) or "none"
            ratio = r.get("size_ratio")
            lines.append(
                f"| {row['name']} | {row['metric']} ({ANSWER_BARS[row['metric']]}) | {LABELS[v]} "
                f"| {r['status']} | {_f(ratio, '.2f', 'x')} | {_f(r.get('score'), '.4f')} "
                f"| {_f(r.get('speedup'), '.2f', 'x')} | {_f(r.get('p50_ms'), '.2f')} "
                f"| {_f(row.get('float_ms'), '.2f')} | {_f(r.get('quantize_s'), '.1f')} "
                f"| {missed} | {_cell(r.get('message', ''))} |"
            )
    return lines


def truth_markdown(rows: Sequence[Row], variants: Sequence[str]) -> list[str]:
    """For the models whose inputs are drawn from known texts: float's and each variant's
    exact-match accuracy against the true text, and the share of float's right readings each
    variant keeps. Empty when no model has such inputs."""
    labelled = [r for r in rows if any("truth" in v for v in r["variants"].values())]
    if not labelled:
        return []
    lines = [
        "Against the true text (inputs drawn from known strings; exact match, ddddocr's in "
        "lower case). The text bar "
        "compares int8 with float, so where float misreads most inputs its near-tie guesses "
        "decide it; here each cell is accuracy / share of float's right readings kept.",
        "",
        "| model | float | " + " | ".join(LABELS[v] for v in variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    for row in labelled:
        results = [row["variants"].get(v, {}).get("truth") for v in variants]
        first = next(t for t in results if t)
        cells = ["-" if t is None else f"{t['int8']:.4f} / {_f(t['kept'], '.4f')}" for t in results]
        lines.append(f"| {row['name']} | {first['float']:.4f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")[:300]
