"""Builders for the tiny ONNX graphs the graph tests make (one definition, shared)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int | str]],
    outputs: dict[str, list[int | str]],
    inits: dict[str, np.ndarray],
    name: str = "tiny",
) -> onnx.ModelProto:
    """A checked opset-20 model: float32 inputs/outputs; float initializers stored as float32,
    int64 ones (shapes, axes) kept."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
        [
            numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
            for k, v in inits.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def rand(*shape: int, seed: int, std: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, std, shape).astype(np.float32)
