"""Add as TFLite's integer ADD: both inputs brought to a common finer grid by fixed-point
multipliers, then summed in int32.

With ``t = 2 * max(s_a, s_b)`` and a left shift of 20 bits of headroom:

    a' = MultiplyByQuantizedMultiplier((qa - za) << 20, s_a / t)
    b' = MultiplyByQuantizedMultiplier((qb - zb) << 20, s_b / t)
    acc = a' + b'          (unit: t / 2**20)

and the QuantizeLinear after it requantizes ``acc`` by ``M = (t / 2**20) / s_out``: TFLite's
output multiplier exactly. ONNX Runtime's QLinearAdd computes the same sum in float instead,
so the two can differ by one step where the float result falls near a rounding tie.
"""

from __future__ import annotations

import numpy as np

from quanta.ref.fixed_point import multiply_by_quantized_multiplier, quantize_multipliers
from quanta.ref.ops import OpContext, accumulator, per_tensor, register
from quanta.ref.tensor import QTensor

LEFT_SHIFT = 20


def _rescaled(t: QTensor, multiplier: float, rounding: str) -> np.ndarray:
    m0, shift = quantize_multipliers(multiplier)
    return multiply_by_quantized_multiplier(t.centered() << LEFT_SHIFT, m0, shift, rounding)


@register("Add", data_inputs=(0, 1))
def add(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    a, b = per_tensor(inputs[0], "Add input A"), per_tensor(inputs[1], "Add input B")
    sa, sb = float(a.qp.scale), float(b.qp.scale)
    twice_max = 2.0 * max(sa, sb)
    acc = _rescaled(a, sa / twice_max, ctx.rounding) + _rescaled(b, sb / twice_max, ctx.rounding)
    return [accumulator(acc, np.float32(twice_max / 2**LEFT_SHIFT), None)]
