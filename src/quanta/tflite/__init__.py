"""TFLite without TensorFlow: the reader imports a float ``.tflite`` as ONNX
(``tflite_to_onnx``); the writer exports quanta's int8 models (``quanta export-tflite``)."""

from quanta.tflite.convert import SUPPORTED_OPS, onnx_to_tflite
from quanta.tflite.reader import tflite_to_onnx

__all__ = ["SUPPORTED_OPS", "onnx_to_tflite", "tflite_to_onnx"]
