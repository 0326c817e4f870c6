"""ONNX Runtime's profiler, summed per op type: a quantized convnet's int8 kernels show up."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.runtime import profile_node_times, profile_op_times

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def _quantize(model: onnx.ModelProto, images: np.ndarray) -> onnx.ModelProto:
    config = QuantizeConfig(min_fidelity=None, method="minmax")
    return quantize_static(model, CalibrationData({"image": images}), config).model


def test_profile_counts_runs_and_kernels(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    quantized = _quantize(make_convnet(), make_images(32))
    times = profile_op_times(quantized, {"image": make_images(1)}, runs=5)
    assert times.runs == 5
    assert {"QLinearConv", "QGemm"} <= set(times.ms)
    assert all(ms >= 0 for ms in times.ms.values()) and times.total_ms > 0


def test_node_times_keep_the_names_of_fused_int8_nodes(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    quantized = _quantize(make_convnet(), make_images(32))
    times = profile_node_times(quantized, {"image": make_images(1)}, runs=3)
    # the QLinearConv and QGemm that ONNX Runtime fused are profiled as "conv_token_N" and
    # "fc_token_N": the suffix is dropped so they match the graph's node names
    assert {"conv", "fc"} <= set(times)
    assert all(ms >= 0 for ms in times.values())
