"""Op handlers, one file each, in a registry keyed by ONNX op type.

Adding an op is one file with a ``plan_*`` function and one entry in ``REGISTRY``.
"""

from __future__ import annotations

from quanta.graph.ops.concat import MAX_RANGE_RATIO, plan_concat
from quanta.graph.ops.conv import plan_conv
from quanta.graph.ops.elementwise import plan_binary
from quanta.graph.ops.gemm import plan_gemm
from quanta.graph.ops.matmul import plan_matmul
from quanta.graph.ops.passthrough import plan_passthrough
from quanta.graph.ops.plan import Handler, OpPlan, fusable_activation, get_attr
from quanta.graph.ops.pool import plan_average_pool

__all__ = [
    "REGISTRY",
    "FLOAT_IS_FINE",
    "KEPT_FLOAT",
    "MAX_RANGE_RATIO",
    "Handler",
    "OpPlan",
    "fusable_activation",
    "get_attr",
]

REGISTRY: dict[str, Handler] = {
    "Conv": plan_conv,
    "Gemm": plan_gemm,
    "MatMul": plan_matmul,
    "MaxPool": plan_passthrough,
    "Reshape": plan_passthrough,
    "Flatten": plan_passthrough,
    "Transpose": plan_passthrough,
    "Squeeze": plan_passthrough,
    "Unsqueeze": plan_passthrough,
    "Gather": plan_passthrough,
    "Slice": plan_passthrough,
    "Split": plan_passthrough,
    "Resize": plan_passthrough,
    "DepthToSpace": plan_passthrough,
    "SpaceToDepth": plan_passthrough,
    "Add": plan_binary,
    "Mul": plan_binary,
    "Concat": plan_concat,
    "GlobalAveragePool": plan_average_pool,
    "AveragePool": plan_average_pool,
}

# Ops that carry no float arithmetic worth quantizing (shapes, constants, casts): staying float is
# not a loss, so no warning names them. Relu is here because a Relu after Conv/Gemm/MatMul is
# absorbed by its producer's plan; a lone one stays float at no cost.
FLOAT_IS_FINE = frozenset(
    {"Constant", "Shape", "Size", "Cast", "Identity", "Dropout", "Relu", "Clip",
     "ConstantOfShape", "Range", "Expand", "Equal", "Where", "Not", "Less", "Greater"}
)  # fmt: skip

# Ops that quanta keeps float on purpose, with the reason the user sees.
KEPT_FLOAT = {
    "Softmax": "kept float: its output is a probability whose small values int8 would flatten, "
    "and ONNX Runtime's int8 Softmax is no faster on CPU",
    "LayerNormalization": "kept float: normalization needs the full dynamic range of its input",
    "Gelu": "kept float: a non-linear float op between int8 neighbours costs only the Q/DQ pair",
    "Erf": "kept float: part of a float GELU",
    "Sigmoid": "kept float: no measured gain from int8 on CPU",
    "HardSigmoid": "kept float: no int8 kernel in ONNX Runtime's CPU provider",
    "HardSwish": "kept float: no int8 kernel in ONNX Runtime's CPU provider",
    "ReduceMean": "kept float: only a spatial mean (GlobalAveragePool) has an int8 kernel",
    "Div": "kept float: no int8 kernel",
    "Sub": "kept float: no int8 kernel",
    "Pow": "kept float: no int8 kernel",
    "Sqrt": "kept float: no int8 kernel",
    "Tanh": "kept float: no int8 kernel in ONNX Runtime's CPU provider",
}
