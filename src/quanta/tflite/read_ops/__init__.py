"""The TFLite importers, one per builtin operator: ``IMPORTERS[name](ctx, op)`` appends the ONNX
nodes that compute ``op``'s outputs from its inputs (``quanta.tflite.read_context``).

Adding an op: a function ``(ctx: ImportContext, op: Op) -> None`` in the file of its family and
one entry here, keyed by the operator's name in ``tflite.BUILTIN_OPCODE2NAME``; a test in
``tests/tflite_import/`` runs the imported model in ONNX Runtime against LiteRT.
"""

from __future__ import annotations

from collections.abc import Callable

from quanta.tflite.read_context import ImportContext, Op
from quanta.tflite.read_ops.activation import ACTIVATIONS
from quanta.tflite.read_ops.constant import dequantize
from quanta.tflite.read_ops.conv import conv_2d, depthwise_conv_2d, transpose_conv
from quanta.tflite.read_ops.elementwise import BINARY, UNARY
from quanta.tflite.read_ops.fully_connected import fully_connected
from quanta.tflite.read_ops.pool import average_pool_2d, max_pool_2d
from quanta.tflite.read_ops.reduce import REDUCTIONS
from quanta.tflite.read_ops.resize import resize_bilinear, resize_nearest_neighbor
from quanta.tflite.read_ops.shape import SHAPE_OPS

__all__ = ["IMPORTERS", "Importer"]

Importer = Callable[[ImportContext, Op], None]

IMPORTERS: dict[str, Importer] = {
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "TRANSPOSE_CONV": transpose_conv,
    "FULLY_CONNECTED": fully_connected,
    "AVERAGE_POOL_2D": average_pool_2d,
    "MAX_POOL_2D": max_pool_2d,
    "RESIZE_BILINEAR": resize_bilinear,
    "RESIZE_NEAREST_NEIGHBOR": resize_nearest_neighbor,
    "DEQUANTIZE": dequantize,
    **BINARY,
    **UNARY,
    **ACTIVATIONS,
    **SHAPE_OPS,
    **REDUCTIONS,
}
