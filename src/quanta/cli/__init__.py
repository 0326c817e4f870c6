"""The ``quanta`` command."""

from __future__ import annotations

import sys

from quanta.cli.main import ExitStatus, main

__all__ = ["main", "run", "ExitStatus"]


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
