"""Op handlers, one file each, in a registry keyed by ONNX op type.

Adding an op is one file with a ``plan_*`` function and one entry in ``REGISTRY``.
"""

from __future__ import annotations

from quanta.graph.ops.conv import plan_conv
from quanta.graph.ops.gemm import plan_gemm
from quanta.graph.ops.matmul import plan_matmul
from quanta.graph.ops.passthrough import plan_passthrough
from quanta.graph.ops.plan import Handler, OpPlan, get_attr

__all__ = ["REGISTRY", "FLOAT_IS_FINE", "Handler", "OpPlan", "get_attr"]

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
}

# Ops that carry no float arithmetic worth quantizing (shapes, constants, casts): staying float is
# not a loss, so no warning names them. Relu is here because a Relu after Conv/Gemm/MatMul is
# absorbed by its producer's plan; a lone one stays float at no cost.
FLOAT_IS_FINE = frozenset(
    {"Constant", "Shape", "Size", "Cast", "Identity", "Dropout", "Relu", "ConstantOfShape", "Range"}
)
