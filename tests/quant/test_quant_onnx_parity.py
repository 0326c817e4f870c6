"""Oracle parity: quantize/dequantize vs onnx.reference and ONNX Runtime on a one-node graph.

Integers must be exactly equal; the data are dense in exact ties (x / S = k + 0.5 in float32),
in values that divide and multiply-by-1/S round apart, and in out-of-range values.
"""

from __future__ import annotations

import functools
import platform

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from quanta.quant import QParams, dequantize, qrange, quantize

OPSET = 21  # QuantizeLinear-21 / DequantizeLinear-21
ONNX_TYPES = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8}
NP_TYPES = {"int8": np.int8, "uint8": np.uint8}


@functools.cache
def make_model(op: str, dtype: str, rank: int, axis: int | None) -> onnx.ModelProto:
    """``y = op(x, scale, zero_point)``, scale and zero point as inputs: one graph, many runs."""
    q_type = ONNX_TYPES[dtype]
    float_type = TensorProto.FLOAT
    x_type, y_type = (float_type, q_type) if op == "QuantizeLinear" else (q_type, float_type)
    param_shape = [] if axis is None else ["C"]
    shape = [f"d{i}" for i in range(rank)]
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node(op, ["x", "scale", "zero_point"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [
            helper.make_tensor_value_info("x", x_type, shape),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, param_shape),
            helper.make_tensor_value_info("zero_point", q_type, param_shape),
        ],
        [helper.make_tensor_value_info("y", y_type, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10  # the lowest IR that opset 21 allows: any recent ORT reads it
    onnx.checker.check_model(model, full_check=True)
    return model


@functools.cache
def reference(op: str, dtype: str, rank: int, axis: int | None) -> ReferenceEvaluator:
    return ReferenceEvaluator(make_model(op, dtype, rank, axis))


@functools.cache
def session(op: str, dtype: str, rank: int, axis: int | None) -> ort.InferenceSession:
    model = make_model(op, dtype, rank, axis).SerializeToString()
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def run_ort(op: str, x: np.ndarray, qp: QParams) -> np.ndarray:
    feeds = {"x": x, "scale": qp.scale, "zero_point": qp.zero_point}
    return session(op, qp.dtype, x.ndim, qp.axis).run(None, feeds)[0]


def run_both(op: str, x: np.ndarray, qp: QParams) -> tuple[np.ndarray, np.ndarray]:
    """(onnx.reference, ONNX Runtime) outputs of ``op`` on ``x`` with ``qp``."""
    feeds = {"x": x, "scale": qp.scale, "zero_point": qp.zero_point}
    return reference(op, qp.dtype, x.ndim, qp.axis).run(None, feeds)[0], run_ort(op, x, qp)


def tricky_values(rng: np.random.Generator, qp: QParams, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 data of ``shape`` (scale broadcast along qp.axis): 3/4 ties, 1/4 anything.

    ``k`` spans the grid and 300 steps past each end, so many values saturate.
    """
    scale = qp.scale.reshape(qp.broadcast_shape(len(shape))).astype(np.float64)
    zp = qp.zero_point.reshape(qp.broadcast_shape(len(shape))).astype(np.int64)
    k = rng.integers(qp.qmin - 300, qp.qmax + 300, shape) - zp
    frac = np.where(rng.random(shape) < 0.75, 0.5, rng.random(shape))
    return ((k + frac) * scale).astype(np.float32)


def count_ties(x: np.ndarray, qp: QParams) -> tuple[int, int]:
    """(exact float32 ties of x / S, elements where x / S and x * (1 / S) round apart)."""
    scale = qp.scale.reshape(qp.broadcast_shape(x.ndim))
    quotient = x / scale
    ties = int(np.sum(np.abs(quotient - np.trunc(quotient)) == 0.5))
    apart = int(np.sum(np.rint(quotient) != np.rint(x * (np.float32(1) / scale))))
    return ties, apart


# -- QuantizeLinear ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "zero_point"),
    [("int8", 0), ("int8", 3), ("int8", -128), ("int8", 127), ("uint8", 0), ("uint8", 128),
     ("uint8", 255)],
)  # fmt: skip
def test_quantize_per_tensor_matches_onnx_and_ort(dtype: str, zero_point: int) -> None:
    rng = np.random.default_rng(abs(zero_point) + len(dtype))
    # random float32 scales, powers of two (every tie exact), and 0.1 (not exact in binary)
    scales = [*rng.uniform(1e-3, 1.0, 6).astype(np.float32), 2.0**-7, 1.0, 0.1]
    total_ties = total_apart = 0
    for scale in scales:
        qp = QParams(scale, zero_point, dtype)
        # 2 * 1021 + 5 elements: not a multiple of any SIMD width, so ORT's scalar tail runs too
        x = tricky_values(rng, qp, (2 * 1021,))
        qmin, qmax = qrange(dtype)
        # 0.0 and -0.0, the ties just past each end of the grid, one far out
        edges = np.array([0.0, -0.0, qmax - zero_point + 0.5, qmin - zero_point - 0.5, 1e3])
        x = np.concatenate([x, (edges * np.float64(scale)).astype(np.float32)])
        ours = quantize(x, qp)
        ref, rt = run_both("QuantizeLinear", x, qp)
        assert ours.dtype == ref.dtype == rt.dtype == NP_TYPES[dtype]
        np.testing.assert_array_equal(ours, ref, err_msg=f"onnx.reference, scale={scale!r}")
        # NOTE: ORT's MLAS kernel divides x / S in float32 (MlasDivideFloat32x4, it does not
        # multiply by 1 / S), rounds to nearest even and saturates, as ONNX: it agrees on every
        # tie, including those that x * (1 / S) would round the other way (counted below).
        np.testing.assert_array_equal(ours, rt, err_msg=f"ONNX Runtime, scale={scale!r}")
        ties, apart = count_ties(x, qp)
        total_ties += ties
        total_apart += apart
        assert (ours == qmin).any() and (ours == qmax).any()  # saturated at both ends
    # the data can tell the conventions apart: exact ties, and x / S vs x * (1 / S)
    assert total_ties > 5000
    assert total_apart > 50


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize(("shape", "axis"), [((5, 33), 0), ((4, 6, 7), 1), ((3, 9), 1)])
def test_quantize_per_axis_matches_onnx_and_ort(
    dtype: str, shape: tuple[int, ...], axis: int
) -> None:
    rng = np.random.default_rng(len(shape) * 10 + axis)
    qmin, qmax = qrange(dtype)
    channels = shape[axis]
    total_apart = 0
    for _ in range(4):
        scale = rng.uniform(1e-3, 1.0, channels).astype(np.float32)
        zero_point = rng.integers(qmin, qmax + 1, channels).astype(NP_TYPES[dtype])
        qp = QParams(scale, zero_point, dtype, axis=axis)
        x = tricky_values(rng, qp, shape)
        ours = quantize(x, qp)
        ref, rt = run_both("QuantizeLinear", x, qp)
        np.testing.assert_array_equal(ours, ref, err_msg="onnx.reference")
        np.testing.assert_array_equal(ours, rt, err_msg="ONNX Runtime")
        total_apart += count_ties(x, qp)[1]
    assert total_apart > 0


@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")
@pytest.mark.parametrize(("dtype", "zero_point"), [("int8", 3), ("uint8", 128)])
def test_quantize_infinities_match_ort(dtype: str, zero_point: int) -> None:
    qp = QParams(0.1, zero_point, dtype)
    x = np.array([np.inf, -np.inf, 1e10, -1e10, 3e38, -3e38, 2.2e8, -2.2e8], np.float32)
    ours = quantize(x, qp)
    qmin, qmax = qrange(dtype)
    assert ours.tolist() == [qmax, qmin] * 4
    # NOTE: onnx.reference is left out here: it casts rint(x / S) to int32 before clipping, so
    # +inf and any |x / S| >= 2^31 wrap to INT_MIN and come out as qmin (e.g. +inf -> -128).
    np.testing.assert_array_equal(ours, run_ort("QuantizeLinear", x, qp))


@pytest.mark.parametrize(("dtype", "zero_point"), [("int8", 3), ("uint8", 128)])
def test_quantize_nan_differs_from_ort(dtype: str, zero_point: int) -> None:
    qp = QParams(0.1, zero_point, dtype)
    x = np.array([np.nan, 1.0, np.nan], np.float32)
    ours = quantize(x, qp)
    # quanta maps NaN to Z (it dequantizes to 0.0); ONNX leaves NaN -> integer undefined
    assert ours.tolist() == [zero_point, zero_point + 10, zero_point]
    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        pytest.skip("ORT's NaN result below is that of its SSE2 and NEON MLAS kernels")
    # NOTE: ORT's MLAS kernel clamps x / S to [qmin - Z, qmax - Z] before adding Z, with MAXPS
    # (x86) or FMAXNM (NEON), which both return the bound for NaN: NaN -> qmin. Where a tensor
    # holds NaN, quanta's result differs from ORT's by Z - qmin.
    qmin = qrange(dtype)[0]
    assert run_ort("QuantizeLinear", x, qp).tolist() == [qmin, zero_point + 10, qmin]


# -- DequantizeLinear --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize(("shape", "axis"), [((1023,), None), ((5, 33), 0), ((4, 6, 7), 1)])
def test_dequantize_matches_onnx_and_ort(
    dtype: str, shape: tuple[int, ...], axis: int | None
) -> None:
    rng = np.random.default_rng(len(shape))
    qmin, qmax = qrange(dtype)
    channels = () if axis is None else (shape[axis],)
    for _ in range(4):
        scale = rng.uniform(1e-3, 10.0, channels).astype(np.float32)
        zero_point = rng.integers(qmin, qmax + 1, channels).astype(NP_TYPES[dtype])
        qp = QParams(scale, zero_point, dtype, axis=axis)
        q = rng.integers(qmin, qmax + 1, shape).astype(NP_TYPES[dtype])
        q.flat[:2] = qmin, qmax  # both ends of the range
        ours = dequantize(q, qp)
        ref, rt = run_both("DequantizeLinear", q, qp)
        assert ours.dtype == ref.dtype == rt.dtype == np.float32
        # r = S * (q - Z): one float32 product of an exact integer difference, no tolerance
        np.testing.assert_array_equal(ours, ref, err_msg="onnx.reference")
        np.testing.assert_array_equal(ours, rt, err_msg="ONNX Runtime")
