"""Fake quantization in PyTorch with a straight-through estimator.

The forward pass is ``quanta.quant.fake_quantize`` computed with torch ops in float32, bit for
bit: ``q = clamp(round_half_even(x / S) + Z, qmin, qmax)``, ``y = (q - Z) * S``. The backward pass
is the clipped straight-through estimator (Bengio et al. 2013; Jacob et al. 2018): the gradient
passes unchanged where ``x`` lies inside the representable range ``[(qmin - Z) S, (qmax - Z) S]``
and is zero where the value was saturated.
"""

from __future__ import annotations

import torch

from quanta.quant import QParams

__all__ = ["fake_quantize", "qparams_tensors"]


def qparams_tensors(
    qp: QParams, ndim: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point as float32 tensors that broadcast against a rank-``ndim`` tensor."""
    shape = qp.broadcast_shape(ndim)
    scale = torch.from_numpy(qp.scale.reshape(shape).copy()).to(device=device, dtype=torch.float32)
    zp = torch.from_numpy(qp.zero_point.astype("float32").reshape(shape)).to(device=device)
    return scale, zp


class _FakeQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):  # type: ignore[no-untyped-def,override]
        # In place on one buffer: the weights of a large layer are fake-quantized every step.
        y = (x / scale).round_().add_(zero_point).clamp_(qmin, qmax).sub_(zero_point).mul_(scale)
        # NaN -> the zero point, as quanta.quant: only NaN survives the clamp, and it gives 0.0
        y.nan_to_num_(nan=0.0)
        ctx.save_for_backward(x, scale, zero_point)
        ctx.bounds = (qmin, qmax)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def,override]
        x, scale, zero_point = ctx.saved_tensors
        qmin, qmax = ctx.bounds
        lo = (qmin - zero_point) * scale
        hi = (qmax - zero_point) * scale
        inside = (x >= lo) & (x <= hi)
        return grad * inside.to(grad.dtype), None, None, None, None


def fake_quantize(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Quantize-dequantize ``x`` with ``qp`` (per tensor or per ``qp.axis``), STE gradient."""
    scale, zp = qparams_tensors(qp, x.dim(), x.device)
    return _FakeQuantize.apply(x, scale, zp, float(qp.qmin), float(qp.qmax))
