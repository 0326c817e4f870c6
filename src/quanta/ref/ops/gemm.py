"""Gemm and MatMul as QGemm / QLinearMatMul: 8-bit products in int32 with zero-point cross terms.

For ``A`` (zero point ``za``) times ``B`` (zero point ``zb``, per output column when B is a
per-channel weight) over ``K`` terms:

    acc = A @ B - zb * rowsum(A) - za * colsum(B) + K * za * zb (+ bias)

The accumulator's unit is ``s_a * s_b`` (per output column with per-channel B).
"""

from __future__ import annotations

import numpy as np

from quanta.ref.ops import NotInteger, OpContext, accumulator, per_tensor, register
from quanta.ref.saturation import pairwise_saturating_matmul
from quanta.ref.tensor import QTensor, int_matmul


def _product(
    a: QTensor, b: QTensor, b_axis: int | None, ctx: OpContext | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The int32 ``(A - za) @ (B - zb)`` and its unit; ``b_axis`` is B's per-column axis."""
    za = int(a.zero_point.reshape(-1)[0])
    aq = a.q
    emulate = ctx is not None and ctx.emulate_avx2 and b.qp.dtype == "int8" and aq.ndim == 2
    if emulate and a.qp.dtype == "int8":  # ONNX Runtime's x86 kernels take activations as u8
        aq, za = aq + 128, za + 128
    n = b.q.shape[-1]
    zb: np.ndarray
    scale: np.ndarray
    if b_axis is None:
        zb = np.asarray(b.qp.zero_point.reshape(-1)[0], np.int64)
        scale = np.asarray(np.float32(a.qp.scale) * np.float32(b.qp.scale), np.float32)
    else:
        zb = b.qp.zero_point.astype(np.int64).reshape(n)
        scale = np.float32(a.qp.scale) * b.qp.scale.astype(np.float32)
    k = aq.shape[-1]
    acc = int_matmul(aq, b.q)
    if emulate:
        assert ctx is not None
        clipped = pairwise_saturating_matmul(aq, b.q)
        ctx.saturated += int(np.count_nonzero(clipped != acc))
        acc = clipped
    acc = acc - zb * aq.sum(axis=-1, keepdims=True) - za * b.q.sum(axis=-2, keepdims=True)
    return acc + k * za * zb, scale


@register("Gemm", data_inputs=(0, 1, 2))
def gemm(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    if ctx.attrs.get("alpha", 1.0) != 1.0 or ctx.attrs.get("beta", 1.0) != 1.0:
        raise NotInteger("Gemm with alpha or beta other than 1")
    a = per_tensor(inputs[0], "Gemm input A")
    b = inputs[1]
    if b is None or b.q.ndim != 2:
        raise NotInteger("Gemm input B is not a quantized matrix")
    if ctx.attrs.get("transA", 0):
        a = QTensor(a.q.T, a.qp)
    trans_b = bool(ctx.attrs.get("transB", 0))
    b_axis = None
    if b.qp.axis is not None:
        # the per-channel axis must run along the output columns: 0 with transB, 1 without
        if b.qp.axis % 2 != (0 if trans_b else 1):
            raise NotInteger("Gemm weight is quantized along its reduction axis")
        b_axis = 1
    if trans_b:
        b = QTensor(b.q.T, b.qp)
    acc, scale = _product(a, b, b_axis, ctx)
    c = inputs[2] if len(inputs) > 2 else None
    if c is not None:
        acc = acc + c.centered().reshape(1, -1) if c.q.ndim <= 1 else acc + c.centered()
    return [accumulator(acc, scale, 1 if b_axis is not None else None)]


@register("MatMul", data_inputs=(0, 1))
def matmul(ctx: OpContext, inputs: list[QTensor | None]) -> list[QTensor]:
    a = per_tensor(inputs[0], "MatMul input A")
    b = inputs[1]
    if b is None or a.q.ndim < 2 or b.q.ndim < 2:
        raise NotInteger("MatMul needs quantized operands of rank >= 2")
    b_axis = None
    if b.qp.axis is not None:
        if b.q.ndim != 2 or b.qp.axis % 2 != 1:
            raise NotInteger("MatMul B is per-axis along something other than its columns")
        b_axis = a.q.ndim - 1
    acc, scale = _product(a, b, b_axis, ctx if b.qp.axis is not None or b.q.ndim == 2 else None)
    return [accumulator(acc, scale, b_axis)]
