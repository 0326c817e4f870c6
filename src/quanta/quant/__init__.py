"""The math of quantization (NumPy only): qparams, quantize/dequantize, observers."""

from __future__ import annotations

from quanta.quant.calibration_methods import (
    RANGE_METHODS,
    entropy_range,
    minmax_range,
    mse_range,
    percentile_range,
)
from quanta.quant.histogram import HistogramObserver
from quanta.quant.observers import (
    MeanObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    Observer,
)
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
    "HistogramObserver",
    "MeanObserver",
    # building blocks
    "DTYPES",
    "MIN_SCALE",
    "Observer",
    "RANGE_METHODS",
    "entropy_range",
    "minmax_range",
    "mse_range",
    "percentile_range",
    "qrange",
    "quantize_multiplier",
    "round_half_to_even",
]
