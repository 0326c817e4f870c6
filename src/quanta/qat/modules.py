"""QAT modules: an activation quantizer with moving-average ranges, QuantConv2d and QuantLinear.

Every module has two switches, set for the whole model by ``set_qat_state``:

- ``observe``: update the moving-average min/max (training mode only);
- ``fake_quant``: quantize-dequantize in the forward pass (off during the quant delay, and off in
  "float" mode, which export uses to trace the float graph the QDQ rewrite starts from).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from quanta.distributed import is_distributed
from quanta.qat.fake_quant import fake_quantize
from quanta.quant import QParams, choose_qparams

__all__ = ["ActivationQuantizer", "QuantConv2d", "QuantLinear", "weight_qparams"]


def weight_qparams(weight: torch.Tensor, per_channel: bool) -> QParams:
    """Symmetric int8 ``[-127, 127]`` qparams of a weight, per output channel (axis 0) or tensor.

    The same rule as post-training quantization (``quanta.graph.rewrite.quantize_weight``), so the
    exported int8 weights are exactly the ones training saw.
    """
    w = weight.detach().float()
    if per_channel:
        flat = w.reshape(w.shape[0], -1)  # (C_out, rest)
        lo, hi = torch.aminmax(flat, dim=1)  # one pass over the weights
        return choose_qparams(lo.numpy(), hi.numpy(), "int8", symmetric=True, axis=0)
    lo, hi = torch.aminmax(w)
    return choose_qparams(float(lo), float(hi), "int8", symmetric=True)


def _global_batch_norm(bn: nn.BatchNorm2d, y: torch.Tensor) -> torch.Tensor:
    """Training-mode BatchNorm over the *global* batch of all ranks.

    The per-channel count, sum and sum of squares (float64) are all-reduced with autograd
    (``torch.distributed.nn.functional.all_reduce``), so the forward pass and the gradients are
    those of one process holding the whole batch. This is what ``nn.SyncBatchNorm`` does, which
    refuses CPU tensors; the running statistics are updated as ``nn.BatchNorm2d`` would.
    """
    from torch.distributed.nn.functional import all_reduce

    c = y.shape[1]
    y64 = y.double()
    count = torch.full((1,), y.numel() / c, dtype=torch.float64)
    stats = all_reduce(torch.cat([y64.sum((0, 2, 3)), (y64 * y64).sum((0, 2, 3)), count]))
    n = stats[2 * c]
    mean = stats[:c] / n
    var = stats[c : 2 * c] / n - mean * mean  # biased, as normalization uses
    if bn.training and bn.track_running_stats:
        assert bn.running_mean is not None and bn.running_var is not None
        with torch.no_grad():
            assert bn.num_batches_tracked is not None
            bn.num_batches_tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1 / float(bn.num_batches_tracked)
            unbiased = var * (n / (n - 1)) if float(n) > 1 else var
            bn.running_mean.mul_(1 - m).add_(m * mean.to(bn.running_mean.dtype))
            bn.running_var.mul_(1 - m).add_(m * unbiased.to(bn.running_var.dtype))
    shape = (1, c, 1, 1)
    inv = torch.rsqrt(var + bn.eps).to(y.dtype).reshape(shape)
    out = (y - mean.to(y.dtype).reshape(shape)) * inv
    if bn.affine:
        out = out * bn.weight.reshape(shape) + bn.bias.reshape(shape)
    return out


class ActivationQuantizer(nn.Module):
    """Moving-average min/max observer + per-tensor fake quantization of an activation.

    With a ``fixed_range`` (e.g. the [0, 1] of image inputs) nothing is observed.
    """

    # Buffers registered in __init__ with register_buffer.
    min_val: torch.Tensor
    max_val: torch.Tensor
    initialized: torch.Tensor

    def __init__(
        self,
        dtype: str = "int8",
        ema_decay: float = 0.99,
        fixed_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.dtype = dtype
        self.ema_decay = ema_decay
        self.observe = True
        self.fake_quant = False
        self.fixed = fixed_range is not None
        lo, hi = fixed_range if fixed_range is not None else (0.0, 0.0)
        self.register_buffer("min_val", torch.tensor(float(lo), dtype=torch.float64))
        self.register_buffer("max_val", torch.tensor(float(hi), dtype=torch.float64))
        self.register_buffer("initialized", torch.tensor(self.fixed))

    def qparams(self) -> QParams:
        return choose_qparams(float(self.min_val), float(self.max_val), self.dtype)

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        inf = torch.tensor(float("inf"), dtype=torch.float64)
        lo, hi = torch.aminmax(x) if x.numel() else (inf, -inf)
        lo, hi = lo.double(), hi.double()
        if not (torch.isfinite(lo) and torch.isfinite(hi)):  # rare: skip NaN and inf values
            finite = x[torch.isfinite(x)]
            lo = finite.min().double() if finite.numel() else inf
            hi = finite.max().double() if finite.numel() else -inf
        if is_distributed():
            # Under torch.distributed every rank sees its own slice of the global batch; taking
            # the global batch's min and max (all-reduce) before the moving average keeps the
            # ranges identical on every rank and equal to one process's on the whole batch.
            # (DDP's default buffer broadcast would instead copy rank 0's ranges everywhere.)
            both = torch.stack([lo, -hi])  # one collective: min of minima, max of maxima
            dist.all_reduce(both, op=dist.ReduceOp.MIN)
            lo, hi = both[0], -both[1]
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            return
        if not bool(self.initialized):
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
            self.initialized.fill_(True)
        else:
            d = self.ema_decay
            self.min_val.mul_(d).add_((1 - d) * lo)
            self.max_val.mul_(d).add_((1 - d) * hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observe and not self.fixed:
            self._observe(x)
        if self.fake_quant and bool(self.initialized):
            return fake_quantize(x, self.qparams())
        return x

    def extra_repr(self) -> str:
        rng = f"[{float(self.min_val):.4g}, {float(self.max_val):.4g}]"
        return f"{self.dtype}, range={rng}{' fixed' if self.fixed else ''}"


class _QuantWeighted(nn.Module):
    per_channel: bool
    fake_quant: bool

    def quantized_weight(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.fake_quant:
            return weight
        return fake_quantize(weight, weight_qparams(weight, self.per_channel))


class QuantConv2d(_QuantWeighted):
    """Conv2d (optionally with the BatchNorm2d that follows it) with fake-quantized weights.

    BatchNorm folding during training follows Jacob et al. 2018 as PyTorch's ConvBn2d does: the
    weight is scaled by ``gamma / sqrt(running_var + eps)`` before fake quantization (so the int8
    weight is the folded one that will be deployed), the conv output is divided back and the
    BatchNorm then normalizes with batch statistics while training and running ones in eval,
    where the whole is exactly the folded conv.
    """

    def __init__(
        self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, per_channel: bool = True
    ) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.per_channel = per_channel
        self.fake_quant = False

    def _bn_stats(self) -> tuple[nn.BatchNorm2d, torch.Tensor, torch.Tensor]:
        """The BatchNorm and its running mean and variance, which folding needs."""
        bn = self.bn
        assert bn is not None
        if bn.running_mean is None or bn.running_var is None:
            raise TypeError(
                "QuantConv2d cannot fold a BatchNorm2d without running statistics "
                "(track_running_stats=False)"
            )
        return bn, bn.running_mean, bn.running_var

    def _bn_factor(self) -> torch.Tensor:
        bn, _, running_var = self._bn_stats()
        gamma = bn.weight if bn.affine else torch.ones_like(running_var)
        return gamma / torch.sqrt(running_var + bn.eps)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The deployable float weight and bias, with BatchNorm folded in (eval-mode statistics)."""
        w, b = self.conv.weight, self.conv.bias
        if self.bn is None:
            return w, b
        bn, running_mean, _ = self._bn_stats()
        factor = self._bn_factor()
        beta = bn.bias if bn.affine else torch.zeros_like(factor)
        bias = b if b is not None else torch.zeros_like(factor)
        return w * factor.reshape(-1, 1, 1, 1), (bias - running_mean) * factor + beta

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        c = self.conv
        if c.padding_mode != "zeros":
            x = F.pad(x, c._reversed_padding_repeated_twice, mode=c.padding_mode)
            return F.conv2d(x, w, b, c.stride, 0, c.dilation, c.groups)
        return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None or not self.training:
            w, b = self.folded()
            return self._conv(x, self.quantized_weight(w), b)
        factor = self._bn_factor()
        w = self.quantized_weight(self.conv.weight * factor.reshape(-1, 1, 1, 1))
        y = self._conv(x, w, None) / factor.reshape(1, -1, 1, 1)
        if self.conv.bias is not None:
            y = y + self.conv.bias.reshape(1, -1, 1, 1)
        if is_distributed():
            return _global_batch_norm(self.bn, y)  # every rank normalizes by the global batch
        return self.bn(y)


class QuantLinear(_QuantWeighted):
    """Linear with fake-quantized weights (per output channel)."""

    def __init__(self, linear: nn.Linear, per_channel: bool = True) -> None:
        super().__init__()
        self.linear = linear
        self.per_channel = per_channel
        self.fake_quant = False

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.linear.weight, self.linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(self.linear.weight), self.linear.bias)
