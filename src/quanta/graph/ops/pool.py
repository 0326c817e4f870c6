"""Average pooling (AveragePool, GlobalAveragePool): int8 in, int8 out with its own range.

The average of int8 values needs a requantization (QLinearAveragePool), so unlike MaxPool the
output takes its own calibrated scale. Only worth it after an int8 producer.
"""

from __future__ import annotations

import onnx

from quanta.graph.index import GraphIndex
from quanta.graph.ops.plan import OpPlan


def plan_average_pool(node: onnx.NodeProto, index: GraphIndex) -> OpPlan | str:
    if not index.is_float(node.input[0]):
        return "its input is not float32"
    return OpPlan(output="own", requires_quantized_input=True)
