"""Reports: tables (rich in the terminal, Markdown, JSON) and plots."""

from __future__ import annotations

from quanta.report.table import (
    bench_markdown,
    bench_rows,
    bench_table,
    fidelity_table,
    format_ops,
)

__all__ = ["bench_table", "bench_markdown", "bench_rows", "fidelity_table", "format_ops"]
