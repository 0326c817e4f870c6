"""KernelCounts: which ops of an optimized graph run on int8, followed through element types."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from quanta.graph import save_model
from quanta.runtime import KernelCounts, count_kernels

MakeConvnet = Callable[..., onnx.ModelProto]


def graph(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray] | None = None,
    inputs: dict[str, int] | None = None,
) -> onnx.GraphProto:
    """A graph as ONNX Runtime's optimizer writes it; KernelCounts needs no shapes or checks."""
    inputs = inputs or {"x": TensorProto.FLOAT}
    return helper.make_graph(
        nodes,
        "optimized",
        [helper.make_tensor_value_info(name, t, None) for name, t in inputs.items()],
        [],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )


SCALE = np.array(0.1, np.float32)
MS = "com.microsoft"


def test_maxpool_between_quantize_and_dequantize_is_int8() -> None:
    g = graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
            helper.make_node("MaxPool", ["xq"], ["pq"], kernel_shape=[2, 2]),
            helper.make_node("DequantizeLinear", ["pq", "s", "zp"], ["p"]),
            helper.make_node("MaxPool", ["p"], ["p2"], kernel_shape=[2, 2]),  # float again
            helper.make_node("MaxPool", ["x"], ["p3"], kernel_shape=[2, 2]),  # float
        ],
        {"s": SCALE, "zp": np.array(0, np.int8)},
    )
    counts = KernelCounts(g)
    assert counts.int8 == {"MaxPool": 1}
    assert counts.all == {"QuantizeLinear": 1, "MaxPool": 3, "DequantizeLinear": 1}
    assert counts.qdq == {"QuantizeLinear": 1, "DequantizeLinear": 1}
    assert counts.as_dict() == {
        "int8": {"MaxPool": 1},
        "all": {"DequantizeLinear": 1, "MaxPool": 3, "QuantizeLinear": 1},
    }


def test_quantize_without_zero_point_is_uint8() -> None:
    # ONNX: an omitted y_zero_point means uint8 output.
    g = graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s"], ["xq"]),
            helper.make_node("Reshape", ["xq", "shape"], ["r"]),
            helper.make_node("Transpose", ["r"], ["t"]),
        ],
        {"s": SCALE, "shape": np.array([-1], np.int64)},
    )
    assert KernelCounts(g).int8 == {"Reshape": 1, "Transpose": 1}


def test_integer_op_output_type_follows_its_output_zero_point() -> None:
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    g = graph(
        [
            # QLinearConv's output zero point (input 7) is int8: the MaxPool after it is int8.
            helper.make_node("QLinearConv", names, ["c"]),
            helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2]),
            # QGemm without y_scale / y_zero_point writes float: the Flatten after it is float.
            helper.make_node("QGemm", ["p", "xs", "xz", "w", "ws", "wz"], ["g"], domain=MS),
            helper.make_node("Flatten", ["g"], ["f"]),
        ],
        {"yz": np.array(0, np.int8)},
        {"x": TensorProto.INT8},
    )  # fmt: skip
    counts = KernelCounts(g)
    assert counts.int8 == {"QLinearConv": 1, "MaxPool": 1, "QGemm": 1}
    assert counts.qdq == {}


def test_dynamic_quantize_and_uint8_inputs_are_int8() -> None:
    g = graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
            helper.make_node("Squeeze", ["q"], ["sq"]),
            helper.make_node("MaxPool", ["pixels"], ["p"], kernel_shape=[2, 2]),
            helper.make_node("Cast", ["p"], ["pf"], to=TensorProto.FLOAT),
        ],
        inputs={"x": TensorProto.FLOAT, "pixels": TensorProto.UINT8},
    )
    assert KernelCounts(g).int8 == {"Squeeze": 1, "MaxPool": 1}


def test_count_kernels_on_a_float_model(make_convnet: MakeConvnet, tmp_path: Path) -> None:
    path = tmp_path / "float.onnx"
    save_model(make_convnet(), path)
    counts = count_kernels(path)
    assert counts.int8 == {} and counts.qdq == {}
    assert counts.all["Conv"] == 1
    assert list(tmp_path.iterdir()) == [path]  # ORT's optimized graph went to a temp dir
