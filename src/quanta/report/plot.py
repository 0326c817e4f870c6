"""The trade-off plot: file size against accuracy, bubble area = batch-1 latency."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from quanta._io import write_bytes_atomic
from quanta.runtime import BenchResult

__all__ = ["tradeoff_png"]


def tradeoff_png(results: Sequence[BenchResult], path: str | os.PathLike[str], title: str) -> None:
    """Write a PNG (atomically): x = size in MB (log), y = accuracy %, bubble = latency batch 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
    lat = [r.latency[1].p50_ms if 1 in r.latency else 1.0 for r in results]
    biggest = max(lat)
    for r, ms in zip(results, lat, strict=True):
        acc = 100 * (r.accuracy or 0.0)
        size = r.size_bytes / 1e6
        # NOTE: variants often share a size (all int8 ones) and an accuracy; a legend stays
        # readable where labels beside the bubbles would overlap.
        label = f"{r.name}: {size:.2f} MB, {acc:.2f} %, {ms:.3g} ms"
        ax.scatter(size, acc, s=2000 * ms / biggest, alpha=0.45, edgecolors="black", label=label)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), markerscale=0.3,
              title="variant: size, accuracy, b1 latency",
              title_fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("model file size (MB, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    accs = [100 * (r.accuracy or 0.0) for r in results]
    pad = max(0.3, (max(accs) - min(accs)) * 0.6)
    ax.set_ylim(min(accs) - pad, max(accs) + pad)
    sizes = [r.size_bytes / 1e6 for r in results]
    ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
    ax.text(0.99, 0.99, "bubble area: median latency at batch 1", transform=ax.transAxes,
            ha="right", va="top", fontsize=7, alpha=0.7)  # fmt: skip
    buf = io.BytesIO()
    fig.tight_layout()
    # NOTE: no timestamp in the PNG metadata, so the same results give the same bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
