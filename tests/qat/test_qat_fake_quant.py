"""QAT fake quantization: torch forward == NumPy ``quanta.quant.fake_quantize`` bit for bit, and the
clipped straight-through estimator's gradient against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quanta import quant
from quanta.qat import fake_quantize
from quanta.qat.fake_quant import _FakeQuantize, qparams_tensors
from quanta.quant import QParams


def _random_with_ties(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Random values in about [-300 S, 300 S]: a third exact ties (k + 0.5) S, a third far out of
    range (beyond the int8/uint8 grid), the rest ordinary."""
    n = int(np.prod(shape))
    k = rng.integers(-300, 300, n).astype(np.float32)
    ties = (k + np.float32(0.5)) * np.float32(scale)  # rounding half to even
    plain = rng.uniform(-300.0, 300.0, n).astype(np.float32) * np.float32(scale)
    far = rng.choice([-1.0, 1.0], n).astype(np.float32) * np.float32(1e4 * scale)  # saturate case
    pick = rng.integers(0, 3, n)
    x = np.where(pick == 0, ties, np.where(pick == 1, far, plain)).astype(np.float32)
    return x.reshape(shape)


def _torch_fq(x: np.ndarray, qp: QParams) -> np.ndarray:
    return fake_quantize(torch.from_numpy(x), qp).numpy()


# Per-tensor grids: a power-of-two scale makes (k + 0.5) S an exact tie in float32; 0.01 and
# 1/255 are the usual non-dyadic ones.
PER_TENSOR = [
    QParams(np.float32(0.25), np.int8(0), "int8"),
    QParams(np.float32(0.01), np.int8(-7), "int8"),
    QParams(np.float32(1 / 255), np.int8(-128), "int8"),
    QParams(np.float32(0.125), np.uint8(128), "uint8"),
    QParams(np.float32(0.01), np.uint8(3), "uint8"),
    QParams(np.float32(0.5), np.int8(0), "int8", narrow=True),  # weights' [-127, 127]
]


@pytest.mark.parametrize("qp", PER_TENSOR, ids=repr)
def test_per_tensor_forward_equals_numpy_bitwise(qp: QParams) -> None:
    rng = np.random.default_rng(0)
    x = _random_with_ties(rng, (4, 3, 5, 5), float(qp.scale))
    expected = quant.fake_quantize(x, qp)
    actual = _torch_fq(x, qp)
    assert actual.dtype == np.float32
    assert np.array_equal(actual, expected)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_per_channel_axis0_forward_equals_numpy_bitwise(dtype: str) -> None:
    rng = np.random.default_rng(1)
    scale = np.array([0.25, 0.01, 1 / 255, 0.5, 0.0625, 2.0], np.float32)
    zp = (
        np.array([0, -3, -128, 5, 127, 0], np.int8)
        if dtype == "int8"
        else np.array([0, 3, 128, 255, 17, 1], np.uint8)
    )
    qp = QParams(scale, zp, dtype, axis=0)
    x = np.stack([_random_with_ties(rng, (3, 3, 3), float(s)) for s in scale])  # (6, 3, 3, 3)
    expected = quant.fake_quantize(x, qp)
    assert np.array_equal(_torch_fq(x, qp), expected)
    # the channels really use their own grids: channel 1 (S = 0.01) differs from S = 0.25's
    assert not np.array_equal(expected[1], quant.fake_quantize(x[1], PER_TENSOR[0]))


def test_symmetric_weight_qparams_forward_equals_numpy_bitwise() -> None:
    rng = np.random.default_rng(2)
    w = rng.normal(0.0, 0.3, (8, 4, 3, 3)).astype(np.float32)
    flat = w.reshape(8, -1)
    qp = quant.choose_qparams(flat.min(1), flat.max(1), "int8", symmetric=True, axis=0)
    assert np.array_equal(_torch_fq(w, qp), quant.fake_quantize(w, qp))


def test_golden_ties_and_saturation() -> None:
    qp = QParams(np.float32(1.0), np.int8(0), "int8")
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -128.5, 1e6, -1e6], np.float32)
    expected = np.array(
        [
            0.0,  # rounding half to even
            2.0,  # rounding half to even
            2.0,  # rounding half to even
            0.0,  # rounding half to even (-0)
            -2.0,  # rounding half to even
            -2.0,  # rounding half to even
            126.0,  # tie just inside the range
            127.0,  # saturate case (128 -> 127)
            -128.0,  # saturate case (-128 is a tie to even, already qmin)
            127.0,  # saturate case
            -128.0,  # saturate case
        ],
        np.float32,
    )
    assert np.array_equal(_torch_fq(x, qp), expected)
    assert np.array_equal(quant.fake_quantize(x, qp), expected)


def test_infinities_saturate_like_numpy() -> None:
    qp = QParams(np.float32(0.1), np.int8(2), "int8")
    x = np.array([np.inf, -np.inf], np.float32)
    assert np.array_equal(_torch_fq(x, qp), quant.fake_quantize(x, qp))


def test_ste_gradient_golden() -> None:
    qp = QParams(np.float32(0.01), np.int8(0), "int8")  # representable range [-1.28, 1.27]
    x = torch.tensor([-2.0, -0.3, 0.0, 0.4, 5.0], requires_grad=True)
    g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    fake_quantize(x, qp).backward(g)
    assert x.grad is not None
    # -2.0 and 5.0 were saturated: no gradient; the rest passes straight through
    assert torch.equal(x.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 0.0]))


def test_ste_gradient_passes_exactly_at_the_range_edges() -> None:
    # S = 0.25, Z = 0: range [-32, 31.75], exact in float32
    qp = QParams(np.float32(0.25), np.int8(0), "int8")
    x = torch.tensor([-32.0, 31.75, -32.0625, 31.8125, 31.875], requires_grad=True)
    fake_quantize(x, qp).backward(torch.ones(5))
    assert x.grad is not None
    # edges pass; just beyond either edge is saturated (31.8125 still rounds to 127, but the
    # clipped STE zeroes the gradient outside [lo, hi])
    assert torch.equal(x.grad, torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))


def test_ste_gradient_uint8_with_zero_point() -> None:
    # uint8, S = 0.5, Z = 10: range [(0 - 10) 0.5, (255 - 10) 0.5] = [-5, 122.5]
    qp = QParams(np.float32(0.5), np.uint8(10), "uint8")
    x = torch.tensor([-5.0, -5.5, 0.0, 122.5, 123.0], requires_grad=True)
    fake_quantize(x, qp).backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert x.grad is not None
    assert torch.equal(x.grad, torch.tensor([1.0, 0.0, 3.0, 4.0, 0.0]))


def test_ste_gradient_per_channel() -> None:
    # channel 0: S = 0.01 -> [-1.28, 1.27]; channel 1: S = 1.0 -> [-128, 127]
    qp = QParams(np.array([0.01, 1.0], np.float32), np.zeros(2, np.int8), "int8", axis=0)
    x = torch.tensor([[[[2.0, 0.5]]], [[[2.0, 200.0]]]], requires_grad=True)  # (2, 1, 1, 2)
    fake_quantize(x, qp).backward(torch.ones_like(x))
    assert x.grad is not None
    assert torch.equal(x.grad, torch.tensor([[[[0.0, 1.0]]], [[[1.0, 0.0]]]]))


def test_scale_and_zero_point_get_no_gradient() -> None:
    qp = QParams(np.float32(0.01), np.int8(3), "int8")
    scale, zp = qparams_tensors(qp, 1)
    scale.requires_grad_(True)
    zp.requires_grad_(True)
    x = torch.tensor([-2.0, 0.1, 0.5], requires_grad=True)
    y = _FakeQuantize.apply(x, scale, zp, float(qp.qmin), float(qp.qmax))
    y.sum().backward()
    assert scale.grad is None
    assert zp.grad is None
    assert x.grad is not None


def test_qparams_tensors_shapes() -> None:
    qp = QParams(np.array([0.1, 0.2, 0.3], np.float32), np.zeros(3, np.int8), "int8", axis=0)
    scale, zp = qparams_tensors(qp, 4)
    assert scale.shape == (3, 1, 1, 1) and scale.dtype == torch.float32
    assert zp.shape == (3, 1, 1, 1) and zp.dtype == torch.float32
    s, z = qparams_tensors(QParams(np.float32(0.1), np.int8(-4), "int8"), 4)
    assert s.shape == () and float(z) == -4.0


def test_nan_matches_numpy() -> None:
    qp = QParams(np.float32(0.1), np.int8(2), "int8")
    x = np.array([np.nan, 1.0], np.float32)
    assert np.array_equal(_torch_fq(x, qp), quant.fake_quantize(x, qp))
