"""Activations with an int8 kernel of their own: LeakyRelu (ONNX Runtime's QLinearLeakyRelu)
and Sigmoid (QLinearSigmoid, a 256-entry table).

Unlike Relu/Clip, they cannot be absorbed into their producer's saturation: LeakyRelu's negative
side is scaled, not clamped, and Sigmoid is a curve. Each runs int8 with a calibrated output
range of its own, only after an int8 producer (between float ops it would add a Q/DQ pair for
nothing) and only when an int8 op reads its output (``needs_int8_reader``: a final probability
stays float).

SiLU / Swish, ``Mul(x, Sigmoid(x))`` (YOLO), runs as QLinearSigmoid + QLinearMul. Measured at
batch 1, one thread (2 shared cores, ONNX Runtime 1.32), on Conv-SiLU-Conv-SiLU-Conv
(32 channels, 40x40): float 0.286 ms, int8 SiLU 0.172 ms (1.66x), the SiLU pair kept float
between int8 Convs 0.333 ms (0.86x, its Q/DQ cost more than the Convs save). On ddddocr_det
(YOLOX, 80 SiLU): int8 SiLU 2.11x faster than float, 97.5 % of float detections kept; SiLU
kept float 98.5 % but 0.96x, slower than float.
"""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan


def plan_activation(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    if not index.is_float(node.input[0]):
        return "its input is not float32"
    return OpPlan(activations=(0,), output="own", requires_quantized_input=True)
