"""The TFLite reader: each imported op computes in ONNX Runtime what LiteRT computes on the
original file (the independent oracle), within float32 rounding; refusals are one line."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tflite
from tflite_builders import B, Builder, i32

from quanta.errors import ModelError
from quanta.runtime import make_session
from quanta.tflite.reader import tflite_to_onnx
from quanta.tflite.writer import OpSpec, TensorSpec, options

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)

A = tflite.ActivationFunctionType
SAME, VALID = tflite.Padding.SAME, tflite.Padding.VALID


def _litert(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    it = litert.Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def check(data: bytes, shape: list[int], want_ops: set[str], seed: int = 1) -> None:
    """LiteRT on ``data`` == ONNX Runtime on the import, and the import has ``want_ops``."""
    x = np.random.default_rng(seed).uniform(-3, 3, shape).astype(np.float32)
    model = tflite_to_onnx(data)
    assert want_ops <= {n.op_type for n in model.graph.node}
    got = make_session(model.SerializeToString()).run(None, {"x": x})
    want = _litert(data, x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        # float32: the two runtimes sum products in different orders
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max())))


Case = Callable[[], tuple[bytes, list[int], set[str]]]


def conv_same_stride2_relu6() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 8, 8, 3])  # SAME, stride 2: one pixel of padding, at the end (TF's rule)
    opts = options("Conv2DOptions", Padding=SAME, StrideW=2, StrideH=2,
                   FusedActivationFunction=A.RELU6)  # fmt: skip
    y = b.op(B.CONV_2D, [b.x, b.weight(4, 3, 3, 3), b.weight(4)], [1, 4, 4, 4], opts)
    return b.finish(y), [1, 8, 8, 3], {"Conv", "Clip"}


def conv_valid_dilated() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 10, 10, 2])
    opts = options("Conv2DOptions", Padding=VALID, StrideW=1, StrideH=1, DilationWFactor=2,
                   DilationHFactor=2)  # fmt: skip
    y = b.op(B.CONV_2D, [b.x, b.weight(3, 3, 3, 2), b.weight(3)], [1, 6, 6, 3], opts)
    return b.finish(y), [1, 10, 10, 2], {"Conv"}


def depthwise_multiplier2_relu() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 8, 8, 3])
    opts = options("DepthwiseConv2DOptions", Padding=SAME, StrideW=1, StrideH=1,
                   DepthMultiplier=2, FusedActivationFunction=A.RELU)  # fmt: skip
    y = b.op(B.DEPTHWISE_CONV_2D, [b.x, b.weight(1, 3, 3, 6), b.weight(6)], [1, 8, 8, 6], opts)
    return b.finish(y), [1, 8, 8, 3], {"Conv", "Relu"}


def fp16_weights_behind_dequantize() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 6, 6, 2])
    w16 = b.const(np.random.default_rng(3).normal(0, 1, (4, 3, 3, 2)).astype(np.float16))
    w = b.op(B.DEQUANTIZE, [w16], [4, 3, 3, 2])
    opts = options("Conv2DOptions", Padding=SAME, StrideW=1, StrideH=1)
    y = b.op(B.CONV_2D, [b.x, w, b.weight(4)], [1, 6, 6, 4], opts)
    return b.finish(y), [1, 6, 6, 2], {"Conv"}


def fully_connected_from_4d_no_bias() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 2, 2, 3])
    opts = options("FullyConnectedOptions", FusedActivationFunction=A.RELU)
    y = b.op(B.FULLY_CONNECTED, [b.x, b.weight(5, 12), -1], [1, 5], opts)
    return b.finish(y), [1, 2, 2, 3], {"Gemm", "Relu"}


def pools() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 8, 8, 3])
    # SAME average pool: padding at the end only; border windows divide by the pixels inside
    avg = b.op(B.AVERAGE_POOL_2D, [b.x], [1, 4, 4, 3],
               options("Pool2DOptions", Padding=SAME, StrideW=2, StrideH=2, FilterWidth=3,
                       FilterHeight=3))  # fmt: skip
    mx = b.op(B.MAX_POOL_2D, [b.x], [1, 4, 4, 3],
              options("Pool2DOptions", Padding=VALID, StrideW=2, StrideH=2, FilterWidth=2,
                      FilterHeight=2))  # fmt: skip
    return b.finish(avg, mx), [1, 8, 8, 3], {"AveragePool", "MaxPool"}


def add_mul_sub_broadcast() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 4, 4, 3])
    c = b.weight(3)  # broadcast over the channels, NumPy-style in both
    s = b.op(B.ADD, [b.x, c], [1, 4, 4, 3], options("AddOptions", FusedActivationFunction=A.RELU))
    m = b.op(B.MUL, [s, b.x], [1, 4, 4, 3], options("MulOptions"))
    d = b.op(B.SUB, [m, c], [1, 4, 4, 3], options("SubOptions"))
    return b.finish(d), [1, 4, 4, 3], {"Add", "Relu", "Mul", "Sub"}


def activations() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 4, 4, 3])
    outs = [
        b.op(B.RELU, [b.x], [1, 4, 4, 3]),
        b.op(B.RELU6, [b.x], [1, 4, 4, 3]),
        b.op(B.LOGISTIC, [b.x], [1, 4, 4, 3]),
        b.op(B.TANH, [b.x], [1, 4, 4, 3]),
        b.op(B.HARD_SWISH, [b.x], [1, 4, 4, 3]),
        b.op(B.LEAKY_RELU, [b.x], [1, 4, 4, 3], options("LeakyReluOptions", Alpha=0.2)),
    ]
    ops = {"Relu", "Clip", "Sigmoid", "Tanh", "HardSwish", "LeakyRelu"}
    return b.finish(*outs), [1, 4, 4, 3], ops


def reshape_softmax_beta() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 2, 2, 5])
    r = b.op(B.RESHAPE, [b.x, b.const(i32(1, 20))], [1, 20])
    y = b.op(B.SOFTMAX, [r], [1, 20], options("SoftmaxOptions", Beta=0.5))
    return b.finish(y), [1, 2, 2, 5], {"Reshape", "Softmax", "Mul"}


def concat_pad_transpose() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 3, 4, 2])
    # LiteRT ignores a fused activation on CONCATENATION: the import must too
    c = b.op(B.CONCATENATION, [b.x, b.x], [1, 3, 4, 4],
             options("ConcatenationOptions", Axis=3, FusedActivationFunction=A.RELU6))  # fmt: skip
    p = b.op(B.PAD, [c, b.const(np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32))],
             [1, 6, 5, 4])  # fmt: skip
    t = b.op(B.TRANSPOSE, [p, b.const(i32(0, 3, 1, 2))], [1, 4, 6, 5])
    return b.finish(t), [1, 3, 4, 2], {"Concat", "Pad", "Transpose"}


def means() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 5, 6, 3])
    spatial = b.op(B.MEAN, [b.x, b.const(i32(1, 2))], [1, 3],
                   options("ReducerOptions", KeepDims=False))  # fmt: skip
    kept = b.op(B.MEAN, [b.x, b.const(i32(1, 2))], [1, 1, 1, 3],
                options("ReducerOptions", KeepDims=True))  # fmt: skip
    channels = b.op(B.MEAN, [b.x, b.const(i32(3))], [1, 5, 6, 1],
                    options("ReducerOptions", KeepDims=True))  # fmt: skip
    return b.finish(spatial, kept, channels), [1, 5, 6, 3], {"GlobalAveragePool", "ReduceMean"}


def _resize(code: int, table: str, align: bool, half: bool) -> Case:
    def case() -> tuple[bytes, list[int], set[str]]:
        b = Builder([1, 4, 5, 2])
        opts = options(table, AlignCorners=align, HalfPixelCenters=half)
        # version 3: half-pixel centers
        y = b.op(code, [b.x, b.const(i32(7, 9))], [1, 7, 9, 2], opts, version=3)
        return b.finish(y), [1, 4, 5, 2], {"Resize"}

    return case


def slices() -> tuple[bytes, list[int], set[str]]:
    b = Builder([1, 6, 6, 4])
    s = b.op(B.STRIDED_SLICE, [b.x, b.const(i32(0, 1, 0, 1)), b.const(i32(1, 5, 6, 4)),
                              b.const(i32(1, 2, 1, 1))], [1, 2, 6, 3],
             options("StridedSliceOptions", BeginMask=0b0101))  # fmt: skip
    return b.finish(s), [1, 6, 6, 4], {"Slice"}


CASES: dict[str, Case] = {
    "conv_same_stride2_relu6": conv_same_stride2_relu6,
    "conv_valid_dilated": conv_valid_dilated,
    "depthwise_multiplier2_relu": depthwise_multiplier2_relu,
    "fp16_weights_behind_dequantize": fp16_weights_behind_dequantize,
    "fully_connected_from_4d_no_bias": fully_connected_from_4d_no_bias,
    "pools": pools,
    "add_mul_sub_broadcast": add_mul_sub_broadcast,
    "activations": activations,
    "reshape_softmax_beta": reshape_softmax_beta,
    "concat_pad_transpose": concat_pad_transpose,
    "means": means,
    "slices": slices,
}
for _align, _half in ((False, False), (True, False), (False, True)):
    _tag = "align" if _align else "half" if _half else "asym"
    CASES[f"resize_bilinear_{_tag}"] = _resize(
        B.RESIZE_BILINEAR, "ResizeBilinearOptions", _align, _half
    )
    CASES[f"resize_nearest_{_tag}"] = _resize(
        B.RESIZE_NEAREST_NEIGHBOR, "ResizeNearestNeighborOptions", _align, _half
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_matches_litert(case: str) -> None:
    data, shape, ops = CASES[case]()
    check(data, shape, ops)


def test_layout_is_the_model_own() -> None:
    data, _, _ = conv_same_stride2_relu6()
    model = tflite_to_onnx(data)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 8, 8, 3]  # NHWC, as the TFLite model takes it
    assert [n.op_type for n in model.graph.node].count("Transpose") == 2  # around the Conv


def test_unknown_op_is_one_line_naming_it() -> None:
    b = Builder([1, 4, 4, 3])
    y = b.op(B.L2_NORMALIZATION, [b.x], [1, 4, 4, 3])
    with pytest.raises(ModelError, match=r"L2_NORMALIZATION \(operator 0\)") as exc:
        tflite_to_onnx(b.finish(y))
    assert "\n" not in str(exc.value)


def test_quantized_model_is_refused() -> None:
    b = Builder([1, 4, 4, 3])
    q = b.model.add(TensorSpec("q", [1, 4, 4, 3], np.dtype(np.int8), scale=[0.1], zero_point=[0]))
    b.model.ops.append(OpSpec(B.QUANTIZE, [b.x], [q]))
    with pytest.raises(ModelError, match="already quantized.*pass the float model") as exc:
        tflite_to_onnx(b.finish(q))
    assert "\n" not in str(exc.value)


def test_not_a_tflite_file() -> None:
    with pytest.raises(ModelError, match="TFL3"):
        tflite_to_onnx(b"\x00" * 64)


def _blaze_block() -> bytes:
    """Conv+ReLU -> channel PAD -> depthwise Conv -> residual ADD+ReLU -> PRELU -> Conv: one
    Transpose pair per Conv as imported, all cancelled between them."""
    b = Builder([1, 6, 6, 3])
    conv = options("Conv2DOptions", Padding=SAME, StrideW=1, StrideH=1,
                   FusedActivationFunction=A.RELU)  # fmt: skip
    c1 = b.op(B.CONV_2D, [b.x, b.weight(4, 3, 3, 3), b.weight(4)], [1, 6, 6, 4], conv)
    padded = b.op(B.PAD, [c1, b.const(i32(0, 0, 0, 0, 0, 0, 0, 2).reshape(4, 2))], [1, 6, 6, 6])
    dw = options("DepthwiseConv2DOptions", Padding=SAME, StrideW=1, StrideH=1, DepthMultiplier=1)
    d = b.op(B.DEPTHWISE_CONV_2D, [padded, b.weight(1, 3, 3, 6), b.weight(6)], [1, 6, 6, 6], dw)
    add = options("AddOptions", FusedActivationFunction=A.RELU)
    s = b.op(B.ADD, [d, padded], [1, 6, 6, 6], add)
    p = b.op(B.PRELU, [s, b.weight(1, 1, 6)], [1, 6, 6, 6])
    plain = options("Conv2DOptions", Padding=SAME, StrideW=1, StrideH=1)
    y = b.op(B.CONV_2D, [p, b.weight(2, 1, 1, 6), b.weight(2)], [1, 6, 6, 2], plain)
    return b.finish(y)


def test_layout_transposes_cancel_between_nchw_ops() -> None:
    data = _blaze_block()
    check(data, [1, 6, 6, 3], {"Conv", "Pad", "Add", "PRelu"})
    ops = [n.op_type for n in tflite_to_onnx(data).graph.node]
    # NOTE: one Transpose in (NHWC -> NCHW) and one out; the import wrote eight (two per Conv,
    # and those the Relu, Pad, Add and PRelu sat between)
    assert ops.count("Transpose") == 2, ops
