"""Old home of the accuracy-aware fallback, now ``quanta.graph.fallback``.

NOTE: kept only because ``quanta.graph.static`` still imports from here; delete this module once
that import reads ``quanta.graph.fallback`` (search) and ``quanta.runtime`` (run_model,
mean_cosine).
"""

from __future__ import annotations

from quanta.graph.fallback import FallbackResult, search_float_nodes
from quanta.runtime import mean_cosine, run_model

__all__ = ["FallbackResult", "mean_cosine", "run_model", "search_float_nodes"]
