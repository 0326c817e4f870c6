"""Quantization-aware training (PyTorch): fake quantization with a straight-through estimator,
QuantConv2d/QuantLinear with BatchNorm folding, quant delay, export to QDQ ONNX."""

from __future__ import annotations

from quanta.qat.config import QATConfig
from quanta.qat.export import export_qat_onnx, qat_to_onnx_model
from quanta.qat.fake_quant import fake_quantize
from quanta.qat.modules import ActivationQuantizer, QuantConv2d, QuantLinear, weight_qparams
from quanta.qat.prepare import activation_quantizers, prepare_qat, set_qat_state
from quanta.qat.train import train_qat

__all__ = [
    # top level API
    "QATConfig",
    "prepare_qat",
    "train_qat",
    "export_qat_onnx",
    "qat_to_onnx_model",
    # building blocks
    "ActivationQuantizer",
    "QuantConv2d",
    "QuantLinear",
    "activation_quantizers",
    "fake_quantize",
    "set_qat_state",
    "weight_qparams",
]
