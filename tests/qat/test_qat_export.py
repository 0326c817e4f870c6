"""QAT export: the QDQ ONNX model in ONNX Runtime agrees with the QAT model's own fake-quant
forward (oracle parity within one output step), carries the trained ranges, has a bit-exact
uint8-input twin, and leaves the QAT model as it found it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import fx, nn

from quanta import quant
from quanta.errors import ModelError
from quanta.models import TrainConfig
from quanta.qat import (
    QuantConv2d,
    QuantLinear,
    activation_quantizers,
    export_qat_onnx,
    prepare_qat,
    qat_to_onnx_model,
    train_qat,
    weight_qparams,
)
from quanta.runtime import make_session


class _Small(nn.Module):
    """Conv(1->4, 3x3, pad 1) -> BatchNorm -> ReLU -> MaxPool 2 -> Flatten -> Linear 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))  # (N, 4, 14, 14)
        return self.fc(self.flatten(x))  # (N, 10)


@dataclass
class Exported:
    qat: fx.GraphModule
    proto: onnx.ModelProto
    proto_uint8: onnx.ModelProto
    proto_again: onnx.ModelProto
    file: Path
    notes: list[str]
    state_before: dict[str, torch.Tensor]
    state_after: dict[str, torch.Tensor]
    flags_before: list[bool]
    flags_after: list[bool]
    training_after: bool


def _flags(model: nn.Module) -> list[bool]:
    return [m.fake_quant for m in model.modules() if hasattr(m, "fake_quant")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    rng = np.random.default_rng(0)
    images = rng.random((128, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, 128)
    torch.manual_seed(0)
    qat = prepare_qat(_Small())
    train_qat(qat, images, labels, TrainConfig(epochs=1, batch_size=32), quant_delay=1)
    sample = torch.from_numpy(images[:64])
    proto, notes = qat_to_onnx_model(qat, sample)
    proto_uint8, _ = qat_to_onnx_model(qat, sample, uint8_input=True)
    # export again from another state: training mode, fake quantization partly off
    state_before = copy.deepcopy(qat.state_dict())
    qat.train()
    modules = [m for m in qat.modules() if hasattr(m, "fake_quant")]
    for i, m in enumerate(modules):
        m.fake_quant = i % 2 == 0
    flags_before = _flags(qat)
    file = tmp_path_factory.mktemp("qat") / "small_qat.onnx"
    proto_again, _ = export_qat_onnx(qat, file, sample)
    result = Exported(
        qat, proto, proto_uint8, proto_again, file, notes,
        state_before, copy.deepcopy(qat.state_dict()), flags_before, _flags(qat), qat.training,
    )  # fmt: skip
    qat.eval()
    for m in modules:
        m.fake_quant = True
    return result


def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _random_inputs(n: int = 256, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


def test_ort_agrees_with_fake_quant_forward(exported: Exported) -> None:
    x = _random_inputs()
    with torch.no_grad():
        expected = exported.qat.eval()(torch.from_numpy(x)).numpy()  # (256, 10)
    actual = make_session(exported.proto.SerializeToString()).run(None, {"image": x})[0]
    assert actual.shape == expected.shape == (256, 10)
    step = float(activation_quantizers(exported.qat)[-1][1].qparams().scale)
    # NOTE: ORT runs QLinearConv/QGemm in integer arithmetic with one requantization rounding,
    # the fake-quant forward rounds float sums; the two may land one output step apart.
    within = np.abs(actual - expected) <= step + 1e-6
    assert within.mean() >= 0.99, f"{within.mean():.4f} of values within one step {step}"
    same_top1 = (actual.argmax(1) == expected.argmax(1)).mean()
    assert same_top1 >= 0.99
    # the outputs are on the output grid
    np.testing.assert_allclose(actual / step, np.rint(actual / step), atol=1e-3)


def test_no_notes_every_tensor_matched_a_quantizer(exported: Exported) -> None:
    assert exported.notes == []


def test_input_and_output_qdq_carry_the_trained_qparams(exported: Exported) -> None:
    proto, c = exported.proto, _consts(exported.proto)
    quantizers = [m.qparams() for _, m in activation_quantizers(exported.qat)]
    (q_in,) = [
        n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image"
    ]
    assert c[q_in.input[1]] == quantizers[0].scale
    assert c[q_in.input[1]] == np.float32(1 / 255)
    assert c[q_in.input[2]] == quantizers[0].zero_point == -128
    (dq_out,) = [n for n in proto.graph.node if n.output[0] == "logits"]
    assert dq_out.op_type == "DequantizeLinear"
    assert c[dq_out.input[1]] == quantizers[-1].scale
    assert c[dq_out.input[2]] == quantizers[-1].zero_point
    assert c[dq_out.input[2]].dtype == np.int8
    # every activation QuantizeLinear uses one of the trained grids
    trained = {(float(q.scale), int(q.zero_point)) for q in quantizers}
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear":
            assert (float(c[node.input[1]]), int(c[node.input[2]])) in trained, node.name


def test_exported_weights_are_the_ones_training_saw(exported: Exported) -> None:
    proto, c = exported.proto, _consts(exported.proto)
    dq = {n.output[0]: n for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    (conv,) = [n for n in proto.graph.node if n.op_type == "Conv"]
    (gemm,) = [n for n in proto.graph.node if n.op_type == "Gemm"]
    for node, module in ((conv, exported.qat.conv), (gemm, exported.qat.fc)):
        assert isinstance(module, QuantConv2d | QuantLinear)
        w = module.folded()[0].detach()
        qp = weight_qparams(w, per_channel=True)
        w_dq = dq[node.input[1]]
        q_int8 = c[w_dq.input[0]]
        assert q_int8.dtype == np.int8 and q_int8.min() >= -127
        assert np.array_equal(q_int8, quant.quantize(w.numpy(), qp))
        assert np.array_equal(c[w_dq.input[1]], qp.scale)


def test_uint8_input_variant_is_bit_identical(exported: Exported) -> None:
    inp = exported.proto_uint8.graph.input[0]
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    u = np.random.default_rng(2).integers(0, 256, (256, 1, 28, 28), dtype=np.uint8)
    x = u.astype(np.float32) / np.float32(255.0)
    raw = np.rint(x * 255.0).astype(np.uint8)
    assert np.array_equal(raw, u)
    from_float = make_session(exported.proto.SerializeToString()).run(None, {"image": x})[0]
    from_uint8 = make_session(exported.proto_uint8.SerializeToString()).run(None, {"image": raw})[0]
    assert np.array_equal(from_uint8, from_float)


def test_export_leaves_the_model_as_it_was(exported: Exported) -> None:
    assert exported.training_after  # was in training mode before the export
    assert exported.flags_after == exported.flags_before
    assert len(set(exported.flags_before)) == 2  # both on and off flags were restored
    # the sample never changes a range (nor anything else in the state dict)
    assert exported.state_after.keys() == exported.state_before.keys()
    for k, v in exported.state_before.items():
        assert torch.equal(exported.state_after[k], v), k


def test_export_is_deterministic_and_independent_of_model_state(exported: Exported) -> None:
    assert exported.proto_again.SerializeToString() == exported.proto.SerializeToString()
    assert onnx.load_model(str(exported.file)).SerializeToString() == (
        exported.proto.SerializeToString()
    )


def test_model_without_quantizers_is_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ModelError, match="no activation quantizers"):
        qat_to_onnx_model(model, torch.rand(2, 1, 2, 2))


class _GlobalPool(nn.Module):
    """Conv -> ReLU -> AdaptiveAvgPool2d(1) -> flatten -> Linear: the exporter writes the pool as
    a ReduceMean, which quanta's canonicalization turns into a GlobalAveragePool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))  # (N, 4, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (N, 10)


def test_global_pool_quantizer_is_matched() -> None:
    # NOTE: _match needs the ONNX tensor to have the torch tensor's shape; were the pool's output
    # quantized only after the Reshape, (N, 4) against (N, 4, 1, 1), the trained range would be
    # dropped for the sample's min-max (a note says so).
    torch.manual_seed(0)
    qat = prepare_qat(_GlobalPool()).train()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        qat(x)  # observe ranges
    proto, notes = qat_to_onnx_model(qat, x)
    assert notes == []
    c = _consts(proto)
    quantizers = [m.qparams() for _, m in activation_quantizers(qat)]
    trained = {(float(q.scale), int(q.zero_point)) for q in quantizers}
    quantize_nodes = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize_nodes) >= 4  # input, conv+relu, pool, fc
    for node in quantize_nodes:
        assert (float(c[node.input[1]]), int(c[node.input[2]])) in trained, node.name
