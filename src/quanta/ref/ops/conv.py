"""Conv (regular, grouped, depthwise) as QLinearConv: int8 x int8 -> int32, zero-point cross terms.

With ``x`` the input integers (zero point ``zx``), ``w`` the weights (per output channel
``zw[o]``) and ``K`` the terms of one output (``C_in/group * kh * kw``):

    acc[o] = sum(x * w) - zw[o] * sum(x) - zx * sum(w[o]) + K * zx * zw[o] + bias[o]

which is ``sum((x - zx) * (w - zw))`` with only raw 8-bit products inside the sum. Padding is
filled with ``zx`` (real 0). The accumulator's unit is ``s_x * s_w[o]``.
"""

from __future__ import annotations

import numpy as np

from quanta.ref.ops import (
    NotInteger,
    OpContext,
    accumulator,
    per_tensor,
    register,
    spatial_attrs,
    windows,
)
from quanta.ref.saturation import pairwise_saturating_matmul
from quanta.ref.tensor import QTensor, exact_einsum


@register("Conv", data_inputs=(0, 1, 2))
def conv(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = per_tensor(inputs[0], "Conv input")
    w = inputs[1]
    if w is None or w.q.ndim != 4:
        raise NotInteger("Conv weight is not a quantized 2-D kernel")
    if w.qp.axis not in (None, 0):
        raise NotInteger("Conv weight is quantized along an axis other than the output channels")
    bias = inputs[2] if len(inputs) > 2 else None
    group = int(ctx.attrs.get("group", 1))
    m, cg, kh, kw = w.q.shape
    strides, pads, dilations = spatial_attrs(ctx, (kh, kw))
    zx = int(x.zero_point.reshape(-1)[0])
    xq_all = x.q
    # an AVX2 CPU without VNNI runs regular convolutions as a u8 x s8 GEMM with int16 pair
    # sums (quanta.ref.saturation); its depthwise kernel accumulates in int32
    emulate = ctx.emulate_avx2 and group == 1 and w.qp.dtype == "int8"
    if emulate and x.qp.dtype == "int8":
        xq_all, zx = xq_all + 128, zx + 128
    zw = np.broadcast_to(w.qp.zero_point.astype(np.int64).reshape(-1), (m,))
    k = cg * kh * kw
    sum_w = w.q.reshape(m, -1).sum(axis=1)  # M
    wg = w.q.reshape(group, m // group, cg, kh, kw)
    # NOTE: the window view is expanded kh*kw times in float64 for the exact einsum; a few
    # samples at a time keep that under ~64 MB (a 112x112x96 depthwise layer is 88 MB a sample)
    per_sample = int(np.prod(x.q.shape[1:])) * kh * kw * 8
    chunk = max(1, (64 << 20) // max(per_sample, 1))
    parts = []
    for start in range(0, x.q.shape[0], chunk):
        xq = xq_all[start : start + chunk]
        win = windows(xq, (kh, kw), strides, pads, dilations, fill=zx)  # N, C, OH, OW, kh, kw
        n, _, oh, ow = win.shape[:4]
        win = win.reshape(n, group, cg, oh, ow, kh, kw)
        products = exact_einsum("ngcijkl,gockl->ngoij", win, wg, depth=k)
        if emulate:
            # im2col in NHWC order: the reduction runs over (kh, kw, C_in), C_in fastest
            cols = win[:, 0].transpose(0, 2, 3, 4, 5, 1).reshape(n * oh * ow, k)
            weights = w.q.transpose(2, 3, 1, 0).reshape(k, m)
            clipped = pairwise_saturating_matmul(cols, weights)
            clipped = clipped.reshape(n, oh, ow, m).transpose(0, 3, 1, 2)[:, None]
            ctx.saturated += int(np.count_nonzero(clipped != products))
            products = clipped
        sum_x = win.sum(axis=(2, 5, 6))  # N, g, OH, OW
        acc = products.reshape(n, m, oh, ow)
        acc = acc - zw[None, :, None, None] * np.repeat(sum_x, m // group, axis=1)
        parts.append(acc - zx * sum_w[None, :, None, None] + k * zx * zw[None, :, None, None])
    acc = np.concatenate(parts)
    if bias is not None:
        acc = acc + bias.centered().reshape(1, m, 1, 1)
    scale = np.float32(x.qp.scale) * w.qp.scale.astype(np.float32)
    return [accumulator(acc, scale, 1 if scale.ndim == 1 else None)]
