"""The trade-off plot: file size against accuracy, bubble area = batch-1 latency."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from quanta._io import write_bytes_atomic
from quanta.runtime import BenchResult

__all__ = ["sqnr_png", "tradeoff_png"]


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


def sqnr_png(
    layers: Sequence[tuple[str, float, float]], path: str | os.PathLike[str], title: str
) -> None:
    """Write a PNG (atomically): one bar per quantized tensor, its SQNR in dB against the float
    model, in graph order; the bar's colour darkens with the layer's sensitivity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, _, _ in layers]
    sqnr = [min(s, 80.0) if s == s else 0.0 for _, s, _ in layers]  # cap inf (exact) at 80 dB
    worst = max((d for _, _, d in layers), default=0.0) or 1.0
    colours = [plt.cm.Reds(0.25 + 0.75 * d / worst) for _, _, d in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(layers) + 2), 4.5), dpi=110)
    ax.bar(range(len(layers)), sqnr, color=colours, edgecolor="black", linewidth=0.3)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.set_ylabel("SQNR vs float (dB, higher is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.text(0.99, 0.99, "darker: larger output damage when quantized alone",
            transform=ax.transAxes, ha="right", va="top", fontsize=7, alpha=0.7)  # fmt: skip
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
