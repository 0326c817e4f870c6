"""Learned weight rounding (GPTQ): lower layer output error than nearest rounding, same grid,
same bytes for the same inputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_graphs import make_model, rand

from quanta.errors import InputError
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.rounding import gptq_round, unfold_rows
from quanta.runtime import run_model


def test_diagonal_hessian_is_nearest_rounding() -> None:
    # uncorrelated inputs: no column can absorb another's error, so each weight rounds alone
    w = np.array([[0.26, -0.74, 1.5], [2.5, 0.49, -3.0]], np.float32)
    scale = np.array([0.5, 1.0], np.float32)
    q = gptq_round(w, scale, np.diag([1.0, 2.0, 3.0]), qmax=127)
    # 0.26/0.5 = 0.52 -> 1; -1.48 -> -1; 3.0 -> 3; 2.5 -> 2 (half to even); 0.49 -> 0; -3 -> -3
    np.testing.assert_array_equal(q, [[1, -1, 3], [2, 0, -3]])


def test_saturates_to_qmax() -> None:
    q = gptq_round(np.array([[10.0, -10.0]]), np.array([0.1]), np.eye(2), qmax=64)
    np.testing.assert_array_equal(q, [[64, -64]])  # saturate case: 100 -> 64, -100 -> -64


def test_lower_layer_error_than_nearest_on_correlated_inputs() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, 32))  # (M, K): rank-4 inputs
    h = x.T @ x
    w = rng.normal(size=(8, 32))
    scale = np.abs(w).max(axis=1) / 127 * 8  # a coarse grid, so rounding error shows
    nearest = np.clip(np.rint(w / scale[:, None]), -127, 127)
    learned = gptq_round(w, scale, h, qmax=127).astype(np.float64)
    err_nearest = np.mean((x @ (w - nearest * scale[:, None]).T) ** 2)
    err_learned = np.mean((x @ (w - learned * scale[:, None]).T) ** 2)
    assert err_learned < 0.5 * err_nearest


@pytest.mark.parametrize(
    ("pads", "strides", "dilations"),
    [([1, 1, 1, 1], [1, 1], [1, 1]), ([0, 1, 2, 0], [2, 1], [1, 2])],
)
def test_conv_patches_times_weight_is_onnx_runtimes_conv(
    pads: list[int], strides: list[int], dilations: list[int]
) -> None:
    w = rand(5, 3, 3, 2, seed=1)
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], name="conv", pads=pads, strides=strides, dilations=dilations
    )
    model = make_model([node], {"x": [2, 3, 7, 6]}, {"y": ["N", 5, "H", "W"]}, {"w": w})
    x = rand(2, 3, 7, 6, seed=2)
    (y,) = run_model(model, {"x": x})  # (N, O, H', W')
    rows = unfold_rows(node, x, (3, 2))
    assert rows is not None
    got = rows @ w.reshape(5, -1).T  # (N·H'·W', O)
    want = y.transpose(0, 2, 3, 1).reshape(-1, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # a seeded draw of 7 rows copies exactly those rows of the full unfold
    drawn = unfold_rows(node, x, (3, 2), np.random.default_rng(4), limit=7)
    chosen = np.sort(np.random.default_rng(4).choice(len(rows), 7, replace=False))
    np.testing.assert_array_equal(drawn, rows[chosen])


def _correlated_gemm() -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """A MatMul then a Gemm on inputs that live in a 6-dimensional subspace of 48: what
    GPTQ exploits, and what real activations look like (few directions carry the energy)."""
    rng = np.random.default_rng(5)
    basis = rng.normal(size=(6, 48)).astype(np.float32)
    w1 = rng.normal(0, 0.2, (48, 32)).astype(np.float32)
    w1[0] *= 40  # one large weight per column: a coarse per-channel grid for the rest
    w2 = rng.normal(0, 0.2, (16, 32)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="gemm", transB=1),
    ]
    model = make_model(
        nodes, {"x": ["N", 48]}, {"y": ["N", 16]}, {"w1": w1, "w2": w2, "b2": np.zeros(16)}
    )
    calib = (rng.normal(size=(256, 6)) @ basis).astype(np.float32)
    held = (rng.normal(size=(256, 6)) @ basis).astype(np.float32)  # never calibrated on
    return model, calib, held


def _quantized(model: onnx.ModelProto, calib: np.ndarray, rounding: str) -> onnx.ModelProto:
    config = QuantizeConfig(
        weight_rounding=rounding,  # type: ignore[arg-type]
        latency_check=False,
        min_fidelity=None,
        method="minmax",
        activation_type="int8",
    )
    return quantize_static(model, CalibrationData({"x": calib}), config).model


def test_gptq_lowers_output_error_against_float_onnx_runtime() -> None:
    model, calib, held = _correlated_gemm()
    (want,) = run_model(model, {"x": held})
    errors = {}
    for rounding in ("nearest", "gptq"):
        (got,) = run_model(_quantized(model, calib, rounding), {"x": held})
        errors[rounding] = float(np.mean((got - want) ** 2))
    assert errors["gptq"] < 0.5 * errors["nearest"], errors


def test_same_inputs_same_bytes() -> None:
    model, calib, _ = _correlated_gemm()
    first = _quantized(model, calib, "gptq").SerializeToString()
    assert _quantized(model, calib, "gptq").SerializeToString() == first
    assert _quantized(model, calib, "nearest").SerializeToString() != first


def test_unknown_rounding_is_one_error_naming_the_flag() -> None:
    with pytest.raises(InputError, match="--weight-rounding 'adaround' is not known"):
        QuantizeConfig(weight_rounding="adaround")  # type: ignore[arg-type]
