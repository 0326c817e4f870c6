"""quantize_fp16: float16 storage, float32 arithmetic, half the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph import save_model
from quanta.graph.fp16 import MIN_ELEMENTS, quantize_fp16
from quanta.runtime import count_kernels, make_session

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, feeds)[0]


def test_large_initializers_become_float16(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    result = quantize_fp16(model)
    q = result.model
    types = {t.name: t.data_type for t in q.graph.initializer}
    sizes = {t.name: int(np.prod(t.dims)) for t in q.graph.initializer}
    # conv.weight (36) and fc.weight (360) are stored as float16; the 4- and 10-element biases
    # are below MIN_ELEMENTS and stay float32.
    assert sorted(n for n, t in types.items() if t == TensorProto.FLOAT16) == [
        "conv.weight_fp16",
        "fc.weight_fp16",
    ]
    assert all(sizes[n] < MIN_ELEMENTS for n, t in types.items() if t == TensorProto.FLOAT)
    casts = [n for n in q.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2
    assert all(types[c.input[0]] == TensorProto.FLOAT16 for c in casts)
    assert result.float_nodes == []
    assert "2 weight tensors" in result.notes[0]


def test_outputs_close_to_float(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    model = make_convnet(hw=28, channels=8)
    images = make_images(32, hw=28)
    y_float = run_ort(model, {"image": images})
    y_half = run_ort(quantize_fp16(model).model, {"image": images})
    # float16 keeps 11 significant bits: each weight is off by at most 2**-11 of itself.
    atol = 1e-3 * np.abs(y_float).max()
    np.testing.assert_allclose(y_half, y_float, rtol=1e-3, atol=atol)


def test_file_is_about_half_the_size(make_convnet: MakeConvnet, tmp_path: Path) -> None:
    model = make_convnet(hw=28, channels=8)  # 13,520 fc weights: the file is mostly weights
    save_model(model, tmp_path / "float.onnx")
    save_model(quantize_fp16(model).model, tmp_path / "fp16.onnx")
    ratio = (tmp_path / "fp16.onnx").stat().st_size / (tmp_path / "float.onnx").stat().st_size
    assert 0.45 < ratio < 0.55


def test_ort_folds_the_casts(make_convnet: MakeConvnet, tmp_path: Path) -> None:
    path = tmp_path / "fp16.onnx"
    save_model(quantize_fp16(make_convnet()).model, path)
    kernels = count_kernels(path)
    assert "Cast" not in kernels.all
    assert kernels.all["Conv"] == 1 and kernels.int8 == {}


def test_values_beyond_float16_range_are_clipped() -> None:
    # 1e5 and -1e6 exceed float16's largest finite value 65504: saturate, never inf.
    w = np.ones((4, 4), np.float32)
    w[0, 0], w[1, 1] = 1e5, -1e6
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    result = quantize_fp16(model)
    half = numpy_helper.to_array(result.model.graph.initializer[0])
    assert half.dtype == np.float16
    assert half[0, 0] == 65504 and half[1, 1] == -65504
    assert np.isfinite(half).all()
    assert any("2 weight values" in n and "clipped" in n for n in result.notes)


def test_already_quantized_model_is_refused(make_convnet: MakeConvnet) -> None:
    from quanta.graph.dynamic import quantize_dynamic

    with pytest.raises(ModelError, match="already quantized"):
        quantize_fp16(quantize_dynamic(make_convnet()).model)


def test_input_model_is_not_modified(make_convnet: MakeConvnet) -> None:
    model = make_convnet()
    before = model.SerializeToString()
    quantize_fp16(model)
    assert model.SerializeToString() == before
