"""End-to-end workflows composed from the other packages."""

from __future__ import annotations

from quanta.workflow.classic import VARIANTS, ClassicConfig, ClassicResult, run_classic

__all__ = ["ClassicConfig", "ClassicResult", "run_classic", "VARIANTS"]
