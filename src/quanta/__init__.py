"""quanta: make trained networks small and fast with int8 arithmetic, and show the trade-off."""

from __future__ import annotations

from quanta.api import Quantized, quantize
from quanta.errors import QuantaError

__all__ = [
    # top level API
    "quantize",
    "Quantized",
    "QuantaError",
    "__version__",
]

__version__ = "0.1.0"
