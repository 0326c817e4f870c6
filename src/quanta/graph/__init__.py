"""ONNX graph passes: prepare, calibrate, quantize (static QDQ, dynamic, float16)."""

from __future__ import annotations

from quanta.graph.calibrate import CalibrationData, collect_ranges
from quanta.graph.config import QuantizeConfig
from quanta.graph.model_io import load_model, save_model
from quanta.graph.prepare import prepare
from quanta.graph.result import FidelityReport, FloatKind, FloatNode, QuantizeResult
from quanta.graph.static import quantize_static

__all__ = [
    # top level API
    "QuantizeConfig",
    "CalibrationData",
    "quantize_static",
    "load_model",
    "save_model",
    # building blocks
    "FloatKind",
    "FloatNode",
    "QuantizeResult",
    "FidelityReport",
    "collect_ranges",
    "prepare",
]
