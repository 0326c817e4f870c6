"""TFLite export of quanta's int8 models, written without TensorFlow (``quanta export-tflite``)."""

from quanta.tflite.convert import SUPPORTED_OPS, onnx_to_tflite

__all__ = ["SUPPORTED_OPS", "onnx_to_tflite"]
