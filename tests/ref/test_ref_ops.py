"""Reference integer kernels: hand-computed integer arrays, and ONNX Runtime on random int8 data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.ref import run_reference
from quanta.runtime import make_session

_TYPES = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}


@dataclass
class Act:
    """A quantized activation input: integers fed to the model, with their grid."""

    name: str
    q: np.ndarray
    scale: float
    zp: int


def single_op(
    op: str,
    acts: list[Act],
    weights: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int | None]] | None = None,
    order: list[str] | None = None,
    out: tuple[float, int, type] | None = None,
    consts: dict[str, np.ndarray] | None = None,
    **attrs: object,
) -> onnx.ModelProto:
    """``int8 inputs -> DQ -> op -> [Q -> DQ] -> float output 'y'``: one op as runtimes see it."""
    nodes, inits, inputs = [], [], []
    for a in acts:
        inputs.append(helper.make_tensor_value_info(f"{a.name}_q", _TYPES[a.q.dtype], a.q.shape))
        inits += [
            numpy_helper.from_array(np.float32(a.scale), f"{a.name}_s"),
            numpy_helper.from_array(np.array(a.zp, a.q.dtype), f"{a.name}_zp"),
        ]
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{a.name}_q", f"{a.name}_s", f"{a.name}_zp"], [a.name]
            )
        )
    for name, (q, s, z, axis) in (weights or {}).items():
        inits += [
            numpy_helper.from_array(q, f"{name}_q"),
            numpy_helper.from_array(s.astype(np.float32), f"{name}_s"),
            numpy_helper.from_array(z, f"{name}_zp"),
        ]
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_zp"], [name], axis=axis
            )
        )
    for name, value in (consts or {}).items():
        inits.append(numpy_helper.from_array(value, name))
    names = order or [a.name for a in acts] + list(weights or {})
    target = "y_f" if out else "y"
    nodes.append(helper.make_node(op, names, [target], **attrs))
    if out:
        scale, zp, dtype = out
        inits += [
            numpy_helper.from_array(np.float32(scale), "y_s"),
            numpy_helper.from_array(np.array(zp, dtype), "y_zp"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["y_f", "y_s", "y_zp"], ["y_q"]),
            helper.make_node("DequantizeLinear", ["y_q", "y_s", "y_zp"], ["y"]),
        ]
    graph = helper.make_graph(
        nodes, op, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


def feeds(acts: list[Act]) -> dict[str, np.ndarray]:
    return {f"{a.name}_q": a.q for a in acts}


def ref_integers(model: onnx.ModelProto, acts: list[Act], rounding: str = "single") -> np.ndarray:
    return run_reference(model, feeds(acts), rounding=rounding).integers["y"].q


# --- hand-computed -----------------------------------------------------------------------------

X33 = np.array([[[[3, 4, 5], [6, 7, 8], [9, 10, 11]]]], np.int8)  # zero point 2: 1..9 centered


def _w(values: list, shape: tuple[int, ...], zp: list[int] | None = None, axis: int = 0):  # type: ignore[no-untyped-def]
    q = np.array(values, np.int8).reshape(shape)
    n = shape[axis]
    return q, np.full(n, 0.1, np.float32), np.array(zp or [0] * n, np.int8), axis


def test_conv_accumulator_by_hand() -> None:
    x = Act("x", X33, 0.5, 2)
    w = _w([1, 2, 3, 4], (1, 1, 2, 2))
    bias = (np.array([5], np.int32), np.array([0.05], np.float32), np.zeros(1, np.int32), 0)
    model = single_op("Conv", [x], {"w": w, "b": bias})
    acc = ref_integers(model, [x])
    # centered x = 1..9; windows . [[1, 2], [3, 4]] = 37, 47, 67, 77; + bias 5
    np.testing.assert_array_equal(acc, [[[[42, 52], [72, 82]]]])
    np.testing.assert_allclose(run_reference(model, feeds([x])).outputs["y"], acc * 0.05, rtol=1e-6)


def test_conv_padding_is_the_input_zero_point() -> None:
    x = Act("x", X33, 0.5, 2)
    model = single_op("Conv", [x], {"w": _w([1, 2, 3, 4], (1, 1, 2, 2))}, pads=[1, 1, 1, 1])
    acc = ref_integers(model, [x])
    assert acc.shape == (1, 1, 4, 4)
    # top-left window holds only x[0, 0] (centered 1) under w[1, 1] = 4; bottom-right: 9 * 1
    assert acc[0, 0, 0, 0] == 4 and acc[0, 0, 3, 3] == 9


def test_conv_weight_zero_points_as_cross_terms() -> None:
    rng = np.random.default_rng(0)
    xq = rng.integers(-128, 128, (2, 4, 5, 5)).astype(np.int8)
    x = Act("x", xq, 0.1, -7)
    wq = rng.integers(-127, 128, (6, 2, 3, 3)).astype(np.int8)
    zw = [0, 3, -5, 1, 0, -2]
    model = single_op(
        "Conv", [x], {"w": _w(wq.ravel().tolist(), wq.shape, zw)}, group=2, strides=[2, 2]
    )
    acc = ref_integers(model, [x])
    # oracle: sum((x - zx) * (w - zw)) per group, in plain int64 loops
    xc = xq.astype(np.int64) + 7
    wc = wq.astype(np.int64) - np.array(zw)[:, None, None, None]
    want = np.zeros((2, 6, 2, 2), np.int64)
    for o in range(6):
        g = o // 3
        for i in range(2):
            for j in range(2):
                patch = xc[:, 2 * g : 2 * g + 2, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
                want[:, o, i, j] = (patch * wc[o]).sum(axis=(1, 2, 3))
    np.testing.assert_array_equal(acc, want)


def test_depthwise_conv_by_hand() -> None:
    xq = np.stack([X33[0, 0], X33[0, 0] + 1])[None]
    x = Act("x", xq.astype(np.int8), 0.5, 2)
    model = single_op("Conv", [x], {"w": _w([2, -3], (2, 1, 1, 1))}, group=2)
    acc = ref_integers(model, [x])
    np.testing.assert_array_equal(acc[0, 0], 2 * (X33[0, 0].astype(np.int64) - 2))
    np.testing.assert_array_equal(acc[0, 1], -3 * (X33[0, 0].astype(np.int64) - 1))


def test_gemm_zero_points_by_hand() -> None:
    a = Act("a", np.array([[2, 3, 4], [1, 1, 1]], np.int8), 0.5, 1)  # centered [[1,2,3],[0,0,0]]
    b = _w([1, 2, 3, 4, 5, 6], (3, 2), zp=[0, 2], axis=1)  # centered columns [1,3,5], [0,2,4]
    model = single_op("Gemm", [a], {"b": b})
    np.testing.assert_array_equal(ref_integers(model, [a]), [[22, 16], [0, 0]])


def test_add_by_hand_through_the_output_grid() -> None:
    a = Act("a", np.array([3, -1], np.int8), 0.5, 1)  # 1.0, -1.0
    b = Act("b", np.array([5, 9], np.int8), 0.25, 1)  # 1.0, 2.0
    model = single_op("Add", [a, b], out=(0.5, -10, np.int8))
    np.testing.assert_array_equal(ref_integers(model, [a, b]), [-6, -8])  # 2.0, 1.0


def test_global_average_pool_tie_rounds_away_from_zero() -> None:
    x = Act("x", np.array([[[[1, 2], [3, 4]]]], np.int8), 1.0, 0)  # mean 2.5
    model = single_op("GlobalAveragePool", [x], out=(1.0, 0, np.int8))
    assert ref_integers(model, [x]).item() == 3  # ONNX Runtime's float path: 2 (half to even)


def test_max_pool_padding_never_wins() -> None:
    x = Act("x", np.full((1, 1, 2, 2), -100, np.int8), 1.0, 0)
    model = single_op(
        "MaxPool", [x], out=(1.0, 0, np.int8), kernel_shape=[2, 2], pads=[1, 1, 1, 1]
    )  # fmt: skip
    np.testing.assert_array_equal(ref_integers(model, [x]), np.full((1, 1, 3, 3), -100))


def test_concat_requantizes_inputs_onto_the_output_grid() -> None:
    a = Act("a", np.array([[10, 20]], np.int8), 0.1, 0)  # 1.0, 2.0
    b = Act("b", np.array([[3]], np.int8), 1.0, 0)  # 3.0
    model = single_op("Concat", [a, b], out=(0.2, 5, np.int8), axis=1)
    np.testing.assert_array_equal(ref_integers(model, [a, b]), [[10, 15, 20]])


@pytest.mark.parametrize(
    ("op", "consts", "attrs", "expect"),
    [
        ("Reshape", {"shape": np.array([3, -1], np.int64)}, {}, lambda x: x.reshape(3, -1)),
        ("Transpose", {}, {"perm": [1, 0, 2]}, lambda x: x.transpose(1, 0, 2)),
        ("Flatten", {}, {"axis": 1}, lambda x: x.reshape(2, -1)),
        ("Gather", {"idx": np.array([2, 0], np.int64)}, {"axis": 2}, lambda x: x[:, :, [2, 0]]),
        ("Slice", {"st": np.array([1], np.int64), "en": np.array([4], np.int64),
                   "ax": np.array([2], np.int64)}, {}, lambda x: x[:, :, 1:4]),
        # reversed, as an exported bidirectional LSTM reverses its backward outputs: the end
        # is -INT64_MAX (before the first element), which must not read as "the last one"
        ("Slice", {"st": np.array([-1], np.int64), "en": np.array([-(2**63 - 1)], np.int64),
                   "ax": np.array([0], np.int64), "sp": np.array([-1], np.int64)}, {},
         lambda x: x[::-1]),
        ("Slice", {"st": np.array([2], np.int64), "en": np.array([0], np.int64),
                   "ax": np.array([2], np.int64), "sp": np.array([-2], np.int64)}, {},
         lambda x: x[:, :, 2:0:-2]),
        ("Unsqueeze", {"ax": np.array([0], np.int64)}, {}, lambda x: x[None]),
    ],
)  # fmt: skip
def test_movers_keep_integers_and_grid(op: str, consts: dict, attrs: dict, expect) -> None:  # type: ignore[no-untyped-def, type-arg]
    xq = np.arange(-12, 12, dtype=np.int8).reshape(2, 3, 4)
    x = Act("x", xq, 0.3, 1)
    model = single_op(
        op, [x], consts=consts, order=["x", *consts], out=(0.3, 1, np.int8), **attrs
    )  # fmt: skip
    run = run_reference(model, feeds([x]))
    assert run.integer_only and run.integer_ops[op] == 1
    np.testing.assert_array_equal(run.integers["y"].q, expect(xq.astype(np.int64)))


# --- against ONNX Runtime on random int8 data --------------------------------------------------


def _random_act(name: str, shape: tuple[int, ...], seed: int, dtype: type = np.int8) -> Act:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    return Act(
        name, q, float(rng.uniform(0.01, 0.1)), int(rng.integers(info.min // 4, info.max // 4))
    )


def _random_weight(shape: tuple[int, ...], axis: int, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    q = rng.integers(-127, 128, shape).astype(np.int8)
    n = shape[axis]
    return q, rng.uniform(0.001, 0.02, n).astype(np.float32), np.zeros(n, np.int8), axis


def _bias(n: int, scale: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
    q = np.random.default_rng(seed).integers(-5000, 5000, n).astype(np.int32)
    return q, scale.astype(np.float32), np.zeros(n, np.int32), 0


def _conv_case(groups: int, seed: int):  # type: ignore[no-untyped-def]
    c, m = 8, 8 if groups > 1 else 6
    x = _random_act("x", (2, c, 9, 9), seed, np.uint8)
    w = _random_weight((m, c // groups, 3, 3), 0, seed + 1)
    b = _bias(m, np.float32(x.scale) * w[1], seed + 2)
    model = single_op(
        "Conv", [x], {"w": w, "b": b}, out=(0.5, 100, np.uint8),
        group=groups, strides=[2, 2], pads=[1, 1, 1, 1],
    )  # fmt: skip
    return model, [x]


def _cases():  # type: ignore[no-untyped-def]
    yield "conv", *_conv_case(1, 10)
    yield "conv_depthwise", *_conv_case(8, 20)
    yield "conv_grouped", *_conv_case(2, 30)
    a = _random_act("a", (4, 64), 40)
    w = _random_weight((10, 64), 0, 41)
    b = _bias(10, np.float32(a.scale) * w[1], 42)
    yield "gemm", single_op("Gemm", [a], {"w": w, "b": b}, out=(0.3, -3, np.int8), transB=1), [a]
    yield "gemm_float_out", single_op("Gemm", [a], {"w": w, "b": b}, transB=1), [a]
    a3, b3 = _random_act("a", (2, 5, 16), 50), _random_act("b", (2, 16, 7), 51)
    yield "matmul_3d", single_op("MatMul", [a3, b3], out=(0.2, 0, np.int8)), [a3, b3]
    wm = _random_weight((16, 12), 1, 52)
    yield "matmul_weight", single_op("MatMul", [a3], {"w": wm}, out=(0.05, 7, np.int8)), [a3]
    x1, x2 = _random_act("p", (2, 3, 4, 4), 60), _random_act("r", (2, 3, 4, 4), 61)
    yield "add", single_op("Add", [x1, x2], out=(0.06, -5, np.int8)), [x1, x2]
    yield "mul", single_op("Mul", [x1, x2], out=(0.02, 0, np.int8)), [x1, x2]
    xp = _random_act("x", (2, 4, 8, 8), 70)
    yield "max_pool", single_op(
        "MaxPool", [xp], out=(xp.scale, xp.zp, np.int8), kernel_shape=[2, 2], strides=[2, 2]
    ), [xp]  # fmt: skip
    yield "average_pool", single_op(
        "AveragePool", [xp], out=(0.03, 2, np.int8), kernel_shape=[3, 3], strides=[1, 1]
    ), [xp]  # fmt: skip
    yield "global_average_pool", single_op("GlobalAveragePool", [xp], out=(0.01, 0, np.int8)), [xp]
    c1, c2 = _random_act("c", (2, 3, 4), 80), _random_act("d", (2, 5, 4), 81)
    yield "concat", single_op("Concat", [c1, c2], out=(0.05, 1, np.int8), axis=1), [c1, c2]


CASES = list(_cases())


@pytest.mark.parametrize(("model", "acts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_onnx_runtime_on_random_integers(model: onnx.ModelProto, acts: list[Act]) -> None:
    run = run_reference(model, feeds(acts), rounding="single")
    assert run.integer_only, run.float_reasons
    ref = run.integers["y"]
    y = make_session(model.SerializeToString()).run(None, feeds(acts))[0].astype(np.float64)
    scale = ref.qp.scale.astype(np.float64).reshape(ref.qp.broadcast_shape(y.ndim))
    ort = np.rint(y / scale).astype(np.int64) + ref.zero_point
    steps = np.abs(ort - ref.q)
    assert steps.max() <= 1
    assert np.count_nonzero(steps) / steps.size <= 0.001
