"""Mul as QLinearMul: ``acc = (qa - za) * (qb - zb)`` in int32, unit ``s_a * s_b``."""

from __future__ import annotations

import numpy as np

from quanta.ref.ops import OpContext, accumulator, per_tensor, register
from quanta.ref.tensor import QTensor


@register("Mul", data_inputs=(0, 1))
def mul(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    a, b = per_tensor(inputs[0], "Mul input A"), per_tensor(inputs[1], "Mul input B")
    acc = a.centered() * b.centered()
    return [accumulator(acc, np.float32(a.qp.scale) * np.float32(b.qp.scale), None)]
