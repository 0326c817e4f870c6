"""The math of quantization (NumPy only): qparams, quantize/dequantize, observers."""

from __future__ import annotations

from quanta.quant.observers import MinMaxObserver, MovingAverageMinMaxObserver, Observer
from quanta.quant.primitives import (
    dequantize,
    fake_quantize,
    quantize,
    quantize_multiplier,
    round_half_to_even,
)
from quanta.quant.qparams import DTYPES, MIN_SCALE, QParams, choose_qparams, qrange

__all__ = [
    # top level API
    "QParams",
    "choose_qparams",
    "quantize",
    "dequantize",
    "fake_quantize",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    # building blocks
    "DTYPES",
    "MIN_SCALE",
    "Observer",
    "qrange",
    "quantize_multiplier",
    "round_half_to_even",
]
