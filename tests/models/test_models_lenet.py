"""LeNet and its ONNX export: shapes, torch == ONNX Runtime, a dynamic batch dimension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from quanta.models import LeNet, export_onnx, to_onnx_model
from quanta.runtime import make_session


@pytest.fixture(scope="module")
def net() -> LeNet:
    torch.manual_seed(0)
    return LeNet().eval()


@pytest.fixture(scope="module")
def proto(net: LeNet) -> onnx.ModelProto:
    return to_onnx_model(net, torch.zeros(1, 1, 28, 28))


@pytest.mark.parametrize("n", [1, 5])
def test_forward_shape(net: LeNet, n: int) -> None:
    with torch.no_grad():
        y = net(torch.rand(n, 1, 28, 28))
    assert y.shape == (n, 10) and y.dtype == torch.float32


def test_num_classes_and_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    net = LeNet(num_classes=3)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 3)
        assert torch.equal(net(x), net(x))  # eval: no dropout
        net.train()
        torch.manual_seed(1)
        a = net(x)
        torch.manual_seed(2)
        assert not torch.equal(a, net(x))  # training: dropout


def test_onnx_io_names_and_dynamic_batch(proto: onnx.ModelProto) -> None:
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "image" and out.name == "logits"
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].HasField("dim_value")
    assert [d.dim_value for d in in_dims[1:]] == [1, 28, 28]
    assert out.type.tensor_type.shape.dim[0].dim_param == in_dims[0].dim_param
    assert not proto.metadata_props
    assert all(not n.metadata_props for n in proto.graph.node)


def test_onnx_matches_torch_at_batch_3(net: LeNet, proto: onnx.ModelProto) -> None:
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    (got,) = make_session(proto.SerializeToString()).run(None, {"image": x})
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, rtol=0.0, atol=1e-5)


def _small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(28 * 28, 10))


def test_export_keeps_training_mode() -> None:
    net = _small().train()
    proto = to_onnx_model(net, torch.zeros(1, 1, 28, 28), input_name="x", output_name="y")
    assert net.training
    # exported in eval mode: no Dropout left to randomize
    assert "Dropout" not in {n.op_type for n in proto.graph.node}


def test_export_onnx_writes_a_checked_file(tmp_path: Path) -> None:
    net = _small().eval()
    path = tmp_path / "small.onnx"
    returned = export_onnx(net, path, torch.zeros(2, 1, 28, 28), input_name="x", output_name="y")
    loaded = onnx.load_model(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded.SerializeToString() == returned.SerializeToString()
    assert [i.name for i in loaded.graph.input] == ["x"]
    assert [o.name for o in loaded.graph.output] == ["y"]
    assert list(tmp_path.iterdir()) == [path]  # no external data, no temporary left behind
