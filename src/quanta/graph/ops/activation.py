"""Activations with an int8 kernel of their own (LeakyRelu: ONNX Runtime's QLinearLeakyRelu).

Unlike Relu/Clip, a LeakyRelu cannot be absorbed into its producer's saturation: its negative
side is scaled, not clamped. It runs int8 with a calibrated output range of its own, and only
after an int8 producer (between float ops it would add a Q/DQ pair for nothing).
"""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan


def plan_activation(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    if not index.is_float(node.input[0]):
        return "its input is not float32"
    return OpPlan(activations=(0,), output="own", requires_quantized_input=True)
