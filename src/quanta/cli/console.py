"""Where the CLI writes: results to stdout, progress and messages to stderr."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["add_force", "out", "err", "progress"]

# NOTE: rich falls back to 80 columns when output is not a terminal (CI logs, pipes), which would
# squeeze the results table into unreadable wraps; files and logs get 160.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def progress(disable: bool = False) -> Progress:
    """A transient progress bar on stderr; ``disable`` draws nothing (ranks other than 0)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=disable,
    )


def add_force(parser: argparse.ArgumentParser) -> None:
    """``--force``: the one way to let a command replace files that already exist."""
    parser.add_argument(
        "--force", action="store_true", help="replace output files that already exist"
    )
