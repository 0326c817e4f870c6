"""``quanta inspect``: per-layer diagnostics of a quantized model against its float reference,
and where ONNX Runtime spends its time in each."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from quanta._io import check_output_path, write_text_atomic
from quanta.cli.console import add_force, err, out
from quanta.errors import InputError

if TYPE_CHECKING:
    from quanta.diagnose import LayerReport, OpTimes

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect", help="per-layer scales, ranges, clipping, SQNR and sensitivity; time per op"
    )
    p.add_argument("model", help="quantized ONNX model")
    p.add_argument("--reference", required=True, help="the float ONNX model it came from")
    p.add_argument(
        "--calibration", required=True, help="X.npz (one array per model input), or mnist"
    )
    p.add_argument("--samples", type=int, default=64, help="samples to run (default 64)")
    p.add_argument(
        "--sensitivity-samples", type=int, default=16,
        help="samples for the quantize-one-layer-alone runs (default 16)",
    )  # fmt: skip
    p.add_argument("--json", help="write the report to this JSON file")
    p.add_argument("--png", help="write a bar chart of per-layer SQNR to this PNG file")
    p.add_argument("--runs", type=int, default=30, help="profiled runs at batch 1 (default 30)")
    add_force(p)
    p.set_defaults(handler=run)


def _db(value: float) -> str:
    return "exact" if math.isinf(value) and value > 0 else f"{value:.1f}"


def run(args: argparse.Namespace) -> int:
    # NOTE: the library loads when the command runs: `quanta --help` builds every command's
    # parser and should not pay for ONNX Runtime.
    from quanta.cli.datasets import eval_set
    from quanta.diagnose import inspect_layers
    from quanta.graph import load_model
    from quanta.report.plot import sqnr_png
    from quanta.runtime import count_kernels, feeds_for, make_session, profile_op_times
    from quanta.runtime.batching import chunk_size, chunks

    for flag, value in (("--samples", args.samples), ("--sensitivity-samples",
                        args.sensitivity_samples), ("--runs", args.runs)):  # fmt: skip
        if value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    inputs = [args.model, args.reference]
    json_path = check_output_path(args.json, *inputs, force=args.force) if args.json else None
    png_path = check_output_path(args.png, *inputs, force=args.force) if args.png else None
    model, reference = load_model(args.model), load_model(args.reference)
    inits = {t.name for t in reference.graph.initializer}
    data = eval_set(
        args.calibration, [i.name for i in reference.graph.input if i.name not in inits]
    )
    feeds = feeds_for(make_session(reference.SerializeToString()), data)
    feeds = {k: v[: args.samples] for k, v in feeds.items()}
    with err.status("inspecting") as status:
        layers = inspect_layers(
            model, reference, feeds, sensitivity_samples=args.sensitivity_samples,
            on_step=lambda msg: status.update(msg),
        )  # fmt: skip
        status.update("profiling ONNX Runtime")
        # batch 1, or the model's fixed batch (ONNX Runtime refuses any other size)
        one, _ = next(chunks(feeds, chunk_size(reference, 1)))
        times = {
            "quantized": profile_op_times(model, one, runs=args.runs),
            "reference": profile_op_times(reference, one, runs=args.runs),
        }
        kernels = count_kernels(Path(args.model))
    n = len(next(iter(feeds.values())))
    _print_layers(args, layers, n)
    int8 = ", ".join(f"{k}×{v}" for k, v in sorted(kernels.int8.items())) or "none"
    out.print(f"ONNX Runtime runs in int8: {int8}")
    _print_times(times, args.runs)
    if png_path:
        sqnr_png(
            [(r.tensor, r.sqnr_db, r.sensitivity) for r in layers], png_path,
            f"per-layer SQNR of {Path(args.model).name} against {Path(args.reference).name}",
        )  # fmt: skip
        err.print(f"wrote {png_path}")
    if json_path:
        doc = _json_doc(args, n, layers, dict(kernels.int8), times)
        write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
        err.print(f"wrote {json_path}")
    return 0


def _print_layers(args: argparse.Namespace, layers: list[LayerReport], n: int) -> None:
    """The per-layer table, the three most sensitive layers in red, and what sensitivity means."""

    table = Table(title=f"{args.model} vs {args.reference}: {n} samples")
    for column in ("tensor", "op", "dtype", "scale", "zp", "grid range", "observed range",
                   "clipped", "SQNR dB", "sensitivity"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("tensor", "op", "dtype") else "right")
    worst = sorted(layers, key=lambda r: -r.sensitivity)[:3]
    for r in layers:
        mark = "[bold red]" if r in worst and r.sensitivity > 0 else ""
        table.add_row(
            f"{mark}{r.tensor}", r.op_type, r.dtype, f"{r.scale:.3g}", str(r.zero_point),
            f"[{r.grid_min:.3g}, {r.grid_max:.3g}]",
            f"[{r.observed_min:.3g}, {r.observed_max:.3g}]", f"{r.clipped_fraction:.3%}",
            _db(r.sqnr_db), f"{r.sensitivity:.2e}",
        )  # fmt: skip
    out.print(table)
    out.print(
        "sensitivity: drop of the output's mean cosine similarity to float when only that "
        f"layer is quantized ({args.sensitivity_samples} samples); the top 3 are in red."
    )


def _print_times(times: dict[str, OpTimes], runs: int) -> None:
    """Time per op type of each model, slowest first, with a total row per model."""

    timing = Table(title=f"time per op type at batch 1, 1 thread (mean of {runs} runs)")
    for column in ("model", "op type", "nodes", "ms per run", "share"):
        timing.add_column(column, justify="left" if column in ("model", "op type") else "right")
    for label, t in times.items():
        for op, ms in sorted(t.ms.items(), key=lambda kv: -kv[1]):
            share = ms / t.total_ms if t.total_ms else 0.0
            timing.add_row(label, op, str(t.nodes[op]), f"{ms:.4f}", f"{share:.1%}")
        timing.add_row(label, "[bold]total[/bold]", "", f"{t.total_ms:.4f}", "", end_section=True)
    out.print(timing)


def _json_doc(
    args: argparse.Namespace,
    n: int,
    layers: list[LayerReport],
    int8_kernels: dict[str, int],
    times: dict[str, OpTimes],
) -> dict[str, object]:
    """The ``--json`` report; a non-finite float (an exact layer's SQNR) is written as null."""
    return {
        "model": args.model,
        "reference": args.reference,
        "samples": n,
        "layers": [
            {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in r.as_dict().items()
            }
            for r in layers
        ],  # fmt: skip
        "int8_kernels": int8_kernels,
        "op_time_ms": {
            label: {"per_op_type": t.ms, "nodes": t.nodes, "total": t.total_ms, "runs": t.runs}
            for label, t in times.items()
        },
    }
