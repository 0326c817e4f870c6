"""Reference models (the classic LeNet), their training loop and ONNX export."""

from __future__ import annotations

from quanta.models.export import export_onnx, to_onnx_model
from quanta.models.lenet import LeNet
from quanta.models.minilm import BertConfig, MiniLM
from quanta.models.mobilenetv2 import MobileNetV2
from quanta.models.train import (
    TrainConfig,
    TrainState,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train,
)

__all__ = [
    "LeNet",
    "MobileNetV2",
    "MiniLM",
    "BertConfig",
    "TrainConfig",
    "TrainState",
    "train",
    "evaluate",
    "export_onnx",
    "to_onnx_model",
    "save_checkpoint",
    "load_checkpoint",
]
