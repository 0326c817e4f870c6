"""load_model / save_model: one ModelError per bad file, opset upgrade, atomic round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph import load_model, save_model
from quanta.graph.model_io import MIN_OPSET, default_opset
from quanta.runtime import make_session

MakeConvnet = Callable[..., onnx.ModelProto]


def relu_model(opset: int, ir_version: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match="is empty"):
        load_model(path)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\x01\x02 not a protobuf \xff\xfe" * 8)
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_model(path)


def test_truncated_file(make_convnet: MakeConvnet, tmp_path: Path) -> None:
    data = make_convnet().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated.onnx"):
        load_model(path)


def test_model_failing_the_checker(tmp_path: Path) -> None:
    model = relu_model(20, 10)
    model.graph.node[0].input.append("x")  # Relu takes exactly one input
    path = tmp_path / "bad.onnx"
    onnx.save_model(model, path)
    with pytest.raises(ModelError, match="fails the ONNX checker"):
        load_model(path)


def test_old_opset_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "opset11.onnx"
    onnx.save_model(relu_model(11, 6), path)
    model = load_model(path)
    assert default_opset(model) >= MIN_OPSET == 13
    x = np.array([[-1.0, 0.0, 2.0, -3.0]], np.float32)
    y = make_session(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, [[0.0, 0.0, 2.0, 0.0]])


def test_current_opset_is_kept(make_convnet: MakeConvnet, tmp_path: Path) -> None:
    model = make_convnet()
    save_model(model, tmp_path / "m.onnx")
    loaded = load_model(tmp_path / "m.onnx")
    assert default_opset(loaded) == 20
    assert loaded.SerializeToString() == model.SerializeToString()


def test_save_is_atomic_and_leaves_no_temporary_file(
    make_convnet: MakeConvnet, tmp_path: Path
) -> None:
    path = tmp_path / "m.onnx"
    save_model(make_convnet(), path)
    save_model(make_convnet(seed=1), path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert load_model(path).SerializeToString() == make_convnet(seed=1).SerializeToString()


def test_external_data_beside_the_model_loads(tmp_path: Path) -> None:
    from conftest import build_convnet

    model = build_convnet()
    want = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="m.weights", size_threshold=0)
    assert (tmp_path / "m.weights").exists()
    loaded = load_model(path)
    got = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_external_data_with_a_wrong_length_is_refused(tmp_path: Path) -> None:
    from conftest import build_convnet

    path = tmp_path / "m.onnx"
    onnx.save_model(build_convnet(), path, save_as_external_data=True, location="w.bin",
                    size_threshold=0)  # fmt: skip
    data = (tmp_path / "w.bin").read_bytes()
    (tmp_path / "w.bin").write_bytes(data[: len(data) // 2])  # truncated weights file
    with pytest.raises(ModelError, match="declares"):
        load_model(path)


def test_constant_nodes_load_as_initializers_and_decoders_stay(tmp_path: Path) -> None:
    # load_model normalizes without folding: a quantized file's int8 weight decoded by
    # Cast -> Mul must stay int8 (folding it would store it as float again)
    w = numpy_helper.from_array(np.arange(4, dtype=np.int8).reshape(1, 4), "w_q")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["w_s"], value_float=0.5),
            helper.make_node("Cast", ["w_q"], ["w_c"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["w_c", "w_s"], ["w"]),
            helper.make_node("Add", ["x", "w"], ["y"]),
        ],
        "decoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    onnx.save_model(model, tmp_path / "m.onnx")
    loaded = load_model(tmp_path / "m.onnx")
    assert [n.op_type for n in loaded.graph.node] == ["Cast", "Mul", "Add"]
    assert [t.name for t in loaded.graph.initializer] == ["w_q", "w_s"]
    x = np.zeros((1, 4), np.float32)
    y = make_session(loaded.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, [[0.0, 0.5, 1.0, 1.5]])


def test_a_constant_node_with_a_wrong_size_is_refused(tmp_path: Path) -> None:
    value = numpy_helper.from_array(np.ones(4, np.float32), "k")
    value.dims[:] = [1_000_000]  # declares 4 MB, holds 16 bytes
    model = relu_model(20, 10)
    model.graph.node.insert(0, helper.make_node("Constant", [], ["k"], value=value))
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path)
    with pytest.raises(ModelError, match="declares shape"):
        load_model(path)
