"""prepare_qat: where activation quantizers go, which layers are wrapped, BatchNorm folding,
warnings for ops that stay float, and set_qat_state (structural tests on the torch.fx graph)."""

from __future__ import annotations

import copy
import operator
import warnings

import numpy as np
import pytest
import torch
from torch import fx, nn

from quanta.errors import InputError, ModelError
from quanta.models import LeNet
from quanta.qat import (
    ActivationQuantizer,
    QATConfig,
    QuantConv2d,
    QuantLinear,
    activation_quantizers,
    prepare_qat,
    set_qat_state,
)


def _quantizer_inputs(gm: fx.GraphModule) -> list[fx.Node]:
    """The node each activation quantizer reads, in graph order."""
    modules = dict(gm.named_modules())
    return [
        n.args[0]  # type: ignore[misc]
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(modules[str(n.target)], ActivationQuantizer)
    ]


def _module_types(gm: fx.GraphModule) -> list[type]:
    modules = dict(gm.named_modules())
    return [type(modules[str(n.target)]) for n in gm.graph.nodes if n.op == "call_module"]


@pytest.fixture(scope="module")
def lenet() -> LeNet:
    torch.manual_seed(0)
    return LeNet().eval()


@pytest.fixture(scope="module")
def lenet_qat(lenet: LeNet) -> fx.GraphModule:
    return prepare_qat(lenet)


def test_lenet_gets_five_activation_quantizers(lenet_qat: fx.GraphModule) -> None:
    quantizers = activation_quantizers(lenet_qat)
    assert len(quantizers) == 5
    inputs = _quantizer_inputs(lenet_qat)
    # input, conv1+relu1, conv2+relu2, fc1+relu3 (before dropout), fc2
    assert [n.op for n in inputs] == ["placeholder", *["call_module"] * 4]
    assert [str(n.target) for n in inputs[1:]] == ["relu1", "relu2", "relu3", "fc2"]
    first = dict(lenet_qat.named_modules())[
        str(next(n for n in lenet_qat.graph.nodes if n.op == "call_module").target)
    ]
    assert isinstance(first, ActivationQuantizer) and first.fixed
    assert (float(first.min_val), float(first.max_val)) == (0.0, 1.0)
    assert [m.fixed for _, m in quantizers] == [True, False, False, False, False]
    assert all(m.dtype == "int8" and not m.fake_quant and m.observe for _, m in quantizers)


def test_lenet_layers_are_wrapped(lenet: LeNet, lenet_qat: fx.GraphModule) -> None:
    for name in ("conv1", "conv2"):
        wrapped = getattr(lenet_qat, name)
        assert isinstance(wrapped, QuantConv2d) and wrapped.bn is None and wrapped.per_channel
        assert wrapped.conv is not getattr(lenet, name)  # a copy
        assert torch.equal(wrapped.conv.weight, getattr(lenet, name).weight)
    for name in ("fc1", "fc2"):
        wrapped = getattr(lenet_qat, name)
        assert isinstance(wrapped, QuantLinear) and wrapped.per_channel
        assert torch.equal(wrapped.linear.weight, getattr(lenet, name).weight)
    assert _module_types(lenet_qat).count(nn.Dropout) == 1
    assert _module_types(lenet_qat).count(nn.MaxPool2d) == 2


def test_original_model_is_unchanged() -> None:
    torch.manual_seed(0)
    net = LeNet()
    before = copy.deepcopy(net.state_dict())
    qat = prepare_qat(net)
    assert type(net.conv1) is nn.Conv2d and type(net.fc2) is nn.Linear
    assert not any(isinstance(m, ActivationQuantizer) for m in net.modules())
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    # training the QAT copy does not touch the original's parameters
    with torch.no_grad():
        qat.conv1.conv.weight.add_(1.0)
    assert torch.equal(net.conv1.weight, before["conv1.weight"])


def test_float_mode_equals_original(lenet: LeNet, lenet_qat: fx.GraphModule) -> None:
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    lenet_qat.eval()
    with torch.no_grad():
        assert torch.equal(lenet_qat(x), lenet(x))


def test_config_options_reach_the_modules() -> None:
    torch.manual_seed(0)
    qat = prepare_qat(
        LeNet(),
        QATConfig(activation_type="uint8", ema_decay=0.5, per_channel=False, input_range=None),
    )
    quantizers = [m for _, m in activation_quantizers(qat)]
    assert all(m.dtype == "uint8" and m.ema_decay == 0.5 and not m.fixed for m in quantizers)
    assert not qat.conv1.per_channel and not qat.fc2.per_channel


class _ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def test_batchnorm_is_folded_into_quant_conv() -> None:
    torch.manual_seed(0)
    model = _ConvBnRelu()
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        model.bn.running_var.copy_(torch.tensor([0.5, 1.5, 2.0, 0.25]))
        model.bn.weight.copy_(torch.tensor([1.2, 0.7, -0.4, 2.0]))
        model.bn.bias.copy_(torch.tensor([0.05, 0.3, -0.2, 0.1]))
    model.eval()
    qat = prepare_qat(model)
    types = _module_types(qat)
    assert nn.BatchNorm2d not in types
    assert types == [ActivationQuantizer, QuantConv2d, nn.ReLU, ActivationQuantizer]
    assert isinstance(qat.conv, QuantConv2d) and isinstance(qat.conv.bn, nn.BatchNorm2d)
    assert str(_quantizer_inputs(qat)[1].target) == "relu"
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    qat.eval()
    with torch.no_grad():
        torch.testing.assert_close(qat(x), model(x), rtol=0.0, atol=1e-5)


def test_batchnorm_without_running_stats() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.warns(UserWarning, match="not folded and stays float"):
        qat = prepare_qat(model).eval()
    x = torch.rand(2, 1, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(qat(x), model.eval()(x), rtol=0.0, atol=1e-5)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv1(x))
        return self.conv2(y) + y


def test_residual_add_gets_a_quantizer() -> None:
    qat = prepare_qat(_Residual())
    inputs = _quantizer_inputs(qat)
    assert len(inputs) == 4  # input, conv1+relu, conv2, add
    add = inputs[-1]
    assert add.op == "call_function" and add.target is operator.add
    (out,) = [n for n in qat.graph.nodes if n.op == "output"]
    assert out.args[0].target == "act_quant_3"  # type: ignore[union-attr]
    assert inputs[1].target is torch.relu  # after the functional relu that follows conv1


class _Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x))


def test_unsupported_op_warns_with_node_name() -> None:
    with pytest.warns(UserWarning, match=r"node 'sigmoid' .*stays float"):
        qat = prepare_qat(_Sigmoid())
    assert len(activation_quantizers(qat)) == 2  # input and fc; none after the sigmoid


def test_supported_model_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_qat(LeNet())


class _Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return x
        return -x


def test_untraceable_model_raises_model_error() -> None:
    with pytest.raises(ModelError, match="torch.fx cannot trace"):
        prepare_qat(_Untraceable())


def test_set_qat_state_toggles_flags() -> None:
    qat = prepare_qat(_Residual())
    qat_modules = [m for m in qat.modules() if isinstance(m, ActivationQuantizer | QuantConv2d)]
    assert len(qat_modules) == 6
    set_qat_state(qat, fake_quant=True)
    assert all(m.fake_quant for m in qat_modules)
    set_qat_state(qat, observe=False)
    assert all(m.fake_quant for m in qat_modules)  # None leaves the other flag alone
    assert all(not m.observe for m in qat_modules if isinstance(m, ActivationQuantizer))
    set_qat_state(qat, fake_quant=False, observe=True)
    assert not any(m.fake_quant for m in qat_modules)
    assert all(m.observe for m in qat_modules if isinstance(m, ActivationQuantizer))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quant_delay": -1}, "--quant-delay"),
        ({"ema_decay": 1.0}, "EMA decay"),
        ({"ema_decay": -0.1}, "EMA decay"),
        ({"activation_type": "int4"}, "int8 or uint8"),
        ({"input_range": (1.0, 0.0)}, "low < high"),
    ],
)
def test_qat_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        QATConfig(**kwargs)  # type: ignore[arg-type]


def test_qat_forward_trains_and_observes() -> None:
    torch.manual_seed(0)
    qat = prepare_qat(_ConvBnRelu())
    set_qat_state(qat, fake_quant=True)
    qat.train()
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    qat(x).sum().backward()
    (_, q_in), (_, q_relu) = activation_quantizers(qat)
    assert (float(q_in.min_val), float(q_in.max_val)) == (0.0, 1.0)
    assert bool(q_relu.initialized) and float(q_relu.min_val) == 0.0
    assert float(q_relu.max_val) > 0.0
    assert qat.conv.conv.weight.grad is not None
    assert np.isfinite(qat.conv.conv.weight.grad.numpy()).all()
