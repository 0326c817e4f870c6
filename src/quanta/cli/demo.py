"""``quanta demo``: the whole classic workflow in one command."""

from __future__ import annotations

import argparse

from quanta.cli.console import add_force, err, out, progress
from quanta.errors import InputError

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="train, quantize every way, benchmark and explain (LeNet/MNIST)"
    )
    p.add_argument(
        "--out", required=True, help="directory for models and reports (created if missing)"
    )
    p.add_argument("--epochs", type=int, default=8, help="float training epochs (default 8)")
    p.add_argument("--data", help="MNIST directory with the four IDX files (default: bundled)")
    p.add_argument(
        "--threads", type=int, default=1, help="intra-op threads when timing (default 1)"
    )
    add_force(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from quanta.report import bench_table
    from quanta.workflow import ClassicConfig, run_classic

    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    target = Path(args.out)
    if target.exists() and not target.is_dir():
        raise InputError(f"--out {args.out!r} is a file; expected a directory")
    from quanta.workflow.classic import output_files

    existing = [p.name for p in output_files(target) if p.exists()]
    if existing and not args.force:
        raise InputError(
            f"--out {args.out!r} already holds {', '.join(existing[:3])}"
            f"{' and more' if len(existing) > 3 else ''}; pass --force to replace them"
        )
    if target.is_dir() and not os.access(target, os.W_OK | os.X_OK):
        raise InputError(f"--out {args.out!r} is not writable; choose another directory")
    config = ClassicConfig(epochs=args.epochs, threads=args.threads, data_dir=args.data)
    with progress() as bar:
        task = bar.add_task("starting", total=None)

        def on_progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total or None)

        result = run_classic(target, config, on_progress)
    out.print(
        bench_table(
            result.results, title=f"LeNet on MNIST ({result.dataset['source']}); {result.machine}"
        )
    )
    for line in result.explanations:
        out.print(f"• {line}")
    out.print(
        f"wall time {result.wall_time_s:.1f} s; wrote {target}/report.md, report.json, tradeoff.png"
    )
    err.print("")
    return 0
