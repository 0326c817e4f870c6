"""Steps of ``benchmarks/classic_tf.py`` shared by its two tables: run a command and keep its
one-line failure, and keep only the files LiteRT loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from classic_report import Row, failure_line


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[bool, str, str]:
    """Run a step; (ok, its one-line failure or "ok", its stdout)."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, env=full_env, check=False)
    if done.returncode != 0:
        return False, failure_line(done.returncode, done.stderr), done.stdout
    return True, "ok", done.stdout


def quanta_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "quanta", *args]


def loadable(rows: list[Row], files: dict[str, Path]) -> list[Row]:
    """The rows whose file was written and LiteRT loads; the others get LiteRT's refusal as their
    status (a quantizer can write a file LiteRT will not run)."""
    from quanta.errors import QuantaError
    from quanta.runtime.litert import LiteRTSession

    for r in rows:
        if r.ok:
            try:
                LiteRTSession(files[r.name])
            except QuantaError as exc:
                r.status = f"written, but {str(exc).splitlines()[0][:260]}"
    return [r for r in rows if r.ok]
