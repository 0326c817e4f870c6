"""QAT modules: weight qparams == the PTQ rule, the activation quantizer's moving average, and
QuantConv2d's BatchNorm folding (eval == conv -> bn, training normalizes with batch statistics)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quanta import quant
from quanta.graph.rewrite import quantize_weight
from quanta.qat import ActivationQuantizer, QuantConv2d, QuantLinear, weight_qparams
from quanta.quant import QParams, choose_qparams


def _same_qparams(a: QParams, b: QParams) -> None:
    assert a.dtype == b.dtype and a.axis == b.axis and a.narrow == b.narrow
    assert np.array_equal(a.scale, b.scale)
    assert np.array_equal(a.zero_point, b.zero_point)
    assert a.zero_point.dtype == b.zero_point.dtype


# ---------------------------------------------------------------- weight_qparams


@pytest.mark.parametrize("shape", [(8, 3, 5, 5), (10, 64), (4, 1, 3, 3)])
@pytest.mark.parametrize("per_channel", [True, False])
def test_weight_qparams_equal_ptq_rule(shape: tuple[int, ...], per_channel: bool) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 0.2, shape).astype(np.float32)
    w[0] = 0.0  # an all-zero channel: scale MIN_SCALE, not 0
    w.reshape(shape[0], -1)[1, 0] = 3.0  # one channel with an outlier
    _, expected = quantize_weight(w, 0 if per_channel else None)
    _same_qparams(weight_qparams(torch.from_numpy(w), per_channel), expected)


def test_weight_qparams_are_symmetric_narrow_int8() -> None:
    w = torch.tensor([[-0.5, 0.25], [0.127, -1.27]])
    qp = weight_qparams(w, per_channel=True)
    assert (qp.qmin, qp.qmax) == (-127, 127)
    assert np.all(qp.zero_point == 0)
    assert np.array_equal(qp.scale, np.array([0.5 / 127, 1.27 / 127], np.float32))


# ---------------------------------------------------------------- ActivationQuantizer


def test_activation_ema_over_three_batches() -> None:
    aq = ActivationQuantizer("int8", ema_decay=0.9)
    aq.train()
    # first batch initializes: [-1, 2]
    aq(torch.tensor([-1.0, 0.5, 2.0]))
    # min 0.9 (-1) + 0.1 (-3) = -1.2; max 0.9 (2) + 0.1 (1) = 1.9
    aq(torch.tensor([-3.0, 1.0]))
    # min 0.9 (-1.2) + 0.1 (0.5) = -1.03; max 0.9 (1.9) + 0.1 (4) = 2.11
    aq(torch.tensor([0.5, 4.0]))
    assert float(aq.min_val) == pytest.approx(-1.03, abs=1e-12)
    assert float(aq.max_val) == pytest.approx(2.11, abs=1e-12)
    assert bool(aq.initialized)
    _same_qparams(aq.qparams(), choose_qparams(float(aq.min_val), float(aq.max_val), "int8"))


def test_activation_observes_only_in_training_with_observe_on() -> None:
    aq = ActivationQuantizer("int8", ema_decay=0.9)
    aq.eval()
    aq(torch.tensor([-1.0, 1.0]))
    assert not bool(aq.initialized)
    aq.train()
    aq.observe = False
    aq(torch.tensor([-1.0, 1.0]))
    assert not bool(aq.initialized)
    aq.observe = True
    aq(torch.tensor([-1.0, 1.0]))
    aq.eval()
    aq(torch.tensor([-100.0, 100.0]))
    assert (float(aq.min_val), float(aq.max_val)) == (-1.0, 1.0)


def test_activation_ignores_non_finite_values() -> None:
    aq = ActivationQuantizer("int8")
    aq.train()
    aq(torch.tensor([float("nan"), float("inf")]))  # nothing finite: not initialized
    assert not bool(aq.initialized)
    aq(torch.tensor([-2.0, float("-inf"), 3.0, float("nan")]))
    assert (float(aq.min_val), float(aq.max_val)) == (-2.0, 3.0)


def test_fixed_range_is_never_updated() -> None:
    aq = ActivationQuantizer("int8", ema_decay=0.5, fixed_range=(0.0, 1.0))
    aq.train()
    aq.fake_quant = True
    x = torch.tensor([-5.0, 0.5, 5.0])
    y = aq(x)
    assert (float(aq.min_val), float(aq.max_val)) == (0.0, 1.0)
    qp = aq.qparams()
    assert np.float32(qp.scale) == np.float32(1 / 255) and int(qp.zero_point) == -128
    # fake quantized on the fixed [0, 1] grid: -5 and 5 saturate to 0 and 1
    assert np.array_equal(y.numpy(), quant.fake_quantize(x.numpy(), qp))
    assert y[0] == 0.0 and y[2] == pytest.approx(1.0, abs=1e-6)


def test_fake_quant_off_is_identity() -> None:
    aq = ActivationQuantizer("int8")
    aq.train()
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    y = aq(x)
    assert y is x  # observed, not quantized
    aq.eval()
    assert aq(x) is x


def test_fake_quant_on_before_any_observation_is_identity() -> None:
    aq = ActivationQuantizer("int8")
    aq.eval()
    aq.fake_quant = True
    x = torch.tensor([0.123, 4.567])
    assert aq(x) is x


def test_fake_quant_on_uses_observed_qparams() -> None:
    aq = ActivationQuantizer("uint8")
    aq.train()
    aq.fake_quant = True
    x = torch.linspace(-1.0, 3.0, 101)
    y = aq(x)
    qp = aq.qparams()
    assert qp.dtype == "uint8"
    assert np.array_equal(y.numpy(), quant.fake_quantize(x.numpy(), qp))


# ---------------------------------------------------------------- QuantConv2d / QuantLinear


def _conv_bn(seed: int = 0, bias: bool = True) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=bias)
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.3, -0.7, 1.2, 0.0, -0.1]))
        bn.running_var.copy_(torch.tensor([0.5, 2.0, 0.1, 1.5, 4.0]))
        bn.weight.copy_(torch.tensor([1.5, -0.8, 0.3, 2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.2, -0.5, 1.0, 0.0, 3.0]))
    return conv, bn


def _images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_eval_float_equals_conv_then_bn(bias: bool) -> None:
    conv, bn = _conv_bn(bias=bias)
    ref_conv, ref_bn = copy.deepcopy(conv).eval(), copy.deepcopy(bn).eval()
    qc = QuantConv2d(conv, bn).eval()
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(qc(x), ref_bn(ref_conv(x)), rtol=0.0, atol=1e-5)


def test_folded_weight_and_bias_with_plain_conv2d() -> None:
    conv, bn = _conv_bn()
    qc = QuantConv2d(conv, bn).eval()
    x = _images()
    with torch.no_grad():
        w, b = qc.folded()
        expected = bn(conv(x))
        torch.testing.assert_close(F.conv2d(x, w, b, padding=1), expected, rtol=0.0, atol=1e-5)
        assert torch.equal(F.conv2d(x, w, b, padding=1), qc(x))


def test_conv_bn_eval_fake_quant_uses_folded_int8_weight() -> None:
    conv, bn = _conv_bn()
    qc = QuantConv2d(conv, bn, per_channel=True).eval()
    qc.fake_quant = True
    x = _images()
    with torch.no_grad():
        w, b = qc.folded()
        w_np = w.numpy()
        wq = quant.fake_quantize(w_np, quantize_weight(w_np, 0)[1])
        expected = F.conv2d(x, torch.from_numpy(wq), b, padding=1)
        torch.testing.assert_close(qc(x), expected, rtol=0.0, atol=1e-6)
        # and it differs from the float folded conv (the weights were really rounded)
        assert not torch.allclose(qc(x), F.conv2d(x, w, b, padding=1), rtol=0.0, atol=1e-7)


def test_conv_bn_training_normalizes_with_batch_statistics() -> None:
    conv, bn = _conv_bn()
    ref_conv, ref_bn = copy.deepcopy(conv).train(), copy.deepcopy(bn).train()
    qc = QuantConv2d(conv, bn).train()
    x = _images(n=16)
    with torch.no_grad():
        y = qc(x)  # (N, C, H, W)
        expected = ref_bn(ref_conv(x))
    torch.testing.assert_close(y, expected, rtol=0.0, atol=1e-4)
    gamma, beta = bn.weight.detach(), bn.bias.detach()
    z = (y - beta.reshape(1, -1, 1, 1)) / gamma.reshape(1, -1, 1, 1)
    # batch statistics, not the running ones: per-channel mean 0 and variance 1 before gamma/beta
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(5), rtol=0.0, atol=1e-4)
    torch.testing.assert_close(
        z.var(dim=(0, 2, 3), unbiased=False), torch.ones(5), rtol=0.0, atol=1e-3
    )
    # the running statistics moved as BatchNorm's own do
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=0.0, atol=1e-5)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, rtol=0.0, atol=1e-5)


def test_conv_bn_training_gradient_reaches_conv_and_bn() -> None:
    conv, bn = _conv_bn()
    qc = QuantConv2d(conv, bn).train()
    qc.fake_quant = True
    qc(_images()).square().sum().backward()
    for p in (conv.weight, conv.bias, bn.weight, bn.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_conv_without_bn_matches_conv_in_both_modes() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    qc = QuantConv2d(copy.deepcopy(conv))
    x = _images()
    with torch.no_grad():
        assert torch.equal(qc.train()(x), conv(x))
        assert torch.equal(qc.eval()(x), conv(x))


def test_conv_non_zero_padding_mode() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    qc = QuantConv2d(copy.deepcopy(conv)).eval()
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(qc(x), conv(x), rtol=0.0, atol=1e-6)


@pytest.mark.parametrize("per_channel", [True, False])
def test_quant_linear(per_channel: bool) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(6, 3)
    ql = QuantLinear(copy.deepcopy(linear), per_channel=per_channel)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(ql(x), linear(x))  # fake quant off
        ql.fake_quant = True
        w = linear.weight.numpy()
        wq = quant.fake_quantize(w, quantize_weight(w, 0 if per_channel else None)[1])
        torch.testing.assert_close(
            ql(x), F.linear(x, torch.from_numpy(wq), linear.bias), rtol=0.0, atol=1e-6
        )
    w_f, b_f = ql.folded()
    assert w_f is ql.linear.weight and b_f is ql.linear.bias
