"""The side-by-side table of benchmarked variants (rich in the terminal, Markdown in files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from rich.table import Table

from quanta.runtime import BenchResult

__all__ = ["bench_rows", "bench_table", "bench_markdown", "format_ops"]


def format_ops(counts: dict[str, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(
        f"{op}×{n}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def bench_rows(results: Sequence[BenchResult]) -> tuple[list[str], list[list[str]]]:
    """Header and cell strings; ratios and deltas are against the first result (the baseline)."""
    base = results[0]
    batches = sorted({b for r in results for b in r.latency})
    header = ["model", "size", "smaller", "accuracy", "Δ acc"]
    for b in batches:
        header += [f"batch {b} ms p50 (p90)", "speed-up"]
    litert = any(r.path.endswith(".tflite") for r in results)
    header.append(
        "int8 kernels run (ONNX Runtime / LiteRT)" if litert else "int8 kernels run by ONNX Runtime"
    )
    rows = []
    for r in results:
        row = [
            r.name,
            f"{r.size_bytes / 1e6:.2f} MB",
            f"{base.size_bytes / r.size_bytes:.2f}×",
            "—" if r.accuracy is None else f"{100 * r.accuracy:.2f} %",
            "—"
            if r.accuracy is None or base.accuracy is None
            else f"{100 * (r.accuracy - base.accuracy):+.2f} pp",
        ]
        for b in batches:
            lat, ref = r.latency.get(b), base.latency.get(b)
            if lat is None or ref is None:
                row += ["—", "—"]
                continue
            row += [f"{lat.p50_ms:.3g} ({lat.p90_ms:.3g})", f"{ref.p50_ms / lat.p50_ms:.2f}×"]
        row.append(format_ops(dict(r.kernels.int8)))
        rows.append(row)
    return header, rows


def bench_table(results: Sequence[BenchResult], title: str | None = None) -> Table:
    header, rows = bench_rows(results)
    table = Table(title=title, header_style="bold")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i in (0, len(header) - 1) else "right")
    for row in rows:
        table.add_row(*row)
    return table


def bench_markdown(results: Sequence[BenchResult]) -> str:
    header, rows = bench_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fidelity_table(results: Sequence[BenchResult], title: str | None = None) -> Table:
    """Per model and output: top-1 agreement (all / confident), cosine, max error, SQNR."""
    table = Table(title=title, header_style="bold")
    for h in ("model", "output", "top-1 agree", "top-1 agree (confident)", "cosine mean",
              "cosine min", "max abs err", "SQNR dB"):  # fmt: skip
        table.add_column(h, justify="left" if h in ("model", "output") else "right")
    for r in results:
        per_output = cast(dict[str, dict[str, Any]], r.extra.get("fidelity", {}))
        for output, f in per_output.items():
            pct = lambda v: "—" if v is None else f"{100 * v:.2f} %"  # noqa: E731
            conf = pct(f["top1_agreement_confident"])
            if f["top1_agreement_confident"] is not None:
                conf += f" of {f['confident_samples']}"
            table.add_row(
                r.name, output, pct(f["top1_agreement"]), conf, f"{f['cosine_mean']:.4f}",
                f"{f['cosine_min']:.4f}", f"{f['max_abs_error']:.4g}",
                "∞" if f["sqnr_db"] is None else f"{f['sqnr_db']:.1f}",
            )  # fmt: skip
    return table
