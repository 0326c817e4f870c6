"""Op handlers, one file each, in a registry keyed by ONNX op type.

What an op is (weight and bias inputs, kind, which backends handle it) is in ``quanta.opfacts``;
this registry holds how static quantization plans it. Adding an op here is one file with a
``plan_*`` function and one entry in ``REGISTRY``, for an op whose facts name ``Backend.STATIC``.
"""

from __future__ import annotations

from quanta.graph.ops.activation import plan_activation
from quanta.graph.ops.concat import MAX_RANGE_RATIO, plan_concat
from quanta.graph.ops.conv import plan_conv
from quanta.graph.ops.elementwise import plan_binary
from quanta.graph.ops.gemm import plan_gemm
from quanta.graph.ops.matmul import plan_matmul
from quanta.graph.ops.passthrough import plan_passthrough
from quanta.graph.ops.plan import Handler, OpPlan, fusable_activation, get_attr
from quanta.graph.ops.pool import plan_average_pool
from quanta.opfacts import FACTS, OpKind

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
    "LeakyRelu": plan_activation,
    "Sigmoid": plan_activation,
    "GlobalAveragePool": plan_average_pool,
    "AveragePool": plan_average_pool,
}

# Ops whose staying float is no loss (no arithmetic worth quantizing, or a Relu/Clip that its
# producer's plan absorbs; a lone one stays float at no cost): no warning names them.
FLOAT_IS_FINE = frozenset(
    op for op, facts in FACTS.items() if facts.kind in (OpKind.SHAPE, OpKind.ACTIVATION)
)

# Ops that quanta keeps float on purpose, with the reason the user sees.
KEPT_FLOAT = {op: facts.float_reason for op, facts in FACTS.items() if facts.float_reason}
