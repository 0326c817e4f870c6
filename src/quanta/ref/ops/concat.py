"""Concat on integers: inputs on the output's grid are copied, others requantized onto it by
the fixed-point multiplier ``s_in / s_out`` first."""

from __future__ import annotations

import numpy as np

from quanta.ref.fixed_point import requantize
from quanta.ref.ops import NotInteger, OpContext, per_tensor, register
from quanta.ref.tensor import QTensor, same_grid


@register("Concat", data_inputs=None)
def concat(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    parts = [per_tensor(t, "Concat input") for t in inputs]
    out = ctx.out
    if out is None:
        if all(same_grid(p.qp, parts[0].qp) for p in parts):
            out = parts[0].qp
        else:
            raise NotInteger("Concat of different grids whose output is not quantized")
    z = int(out.zero_point)
    on_grid = [
        p.q if same_grid(p.qp, out)
        else requantize(
            p.centered(), float(p.qp.scale) / float(out.scale), z, out.qmin, out.qmax,
            ctx.rounding,
        )
        for p in parts
    ]  # fmt: skip
    return [QTensor(np.concatenate(on_grid, axis=int(ctx.attrs["axis"])), out)]
