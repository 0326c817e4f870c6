"""Resuming QAT from a per-epoch ``TrainState`` gives the bytes of the uninterrupted run: model,
Adam state, shuffling/augmentation generator, dropout RNG and the fake-quant switch are
restored, whether the quant delay ends before or after the resume point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quanta.errors import ModelError
from quanta.models import TrainConfig, TrainState
from quanta.qat import export_qat_onnx, prepare_qat, train_qat

SAMPLES, BATCH, EPOCHS = 40, 8, 3  # 5 steps per epoch


class _DropoutNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.flatten(self.relu(self.conv(x)))))


def _run(out: Path, quant_delay: int, *, stop_after: int | None = None,
         resume: TrainState | None = None) -> bytes | None:  # fmt: skip
    rng = np.random.default_rng(5)
    images = rng.random((SAMPLES, 1, 8, 8), dtype=np.float32)
    labels = rng.integers(0, 10, SAMPLES)
    torch.manual_seed(0)
    qat = prepare_qat(_DropoutNet())
    epochs = EPOCHS if stop_after is None else stop_after
    config = TrainConfig(epochs=epochs, batch_size=BATCH, learning_rate=1e-2, shift=1)
    train_qat(qat, images, labels, config, quant_delay=quant_delay, resume=resume,
              on_epoch=lambda s: s.save(out / f"epoch{s.epoch}.pt"))  # fmt: skip
    if stop_after is not None:
        return None  # an interrupted run: only its checkpoints are used, not a model
    export_qat_onnx(qat, out / "model.onnx", torch.from_numpy(images[:4]))
    return (out / "model.onnx").read_bytes()


@pytest.mark.parametrize("quant_delay", [7, 3])  # ends after / before the resume point (step 5)
def test_resume_gives_the_uninterrupted_bytes(tmp_path: Path, quant_delay: int) -> None:
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    straight.mkdir()
    cut.mkdir()
    want = _run(straight, quant_delay)
    _run(cut, quant_delay, stop_after=1)
    got = _run(cut, quant_delay, resume=TrainState.load(cut / "epoch1.pt"))
    assert got == want
    # and the per-epoch states agree too
    a, b = TrainState.load(straight / "epoch2.pt"), TrainState.load(cut / "epoch2.pt")
    for key, value in a.model.items():
        assert torch.equal(value, b.model[key]), key


def test_a_model_state_dict_is_not_a_train_state(tmp_path: Path) -> None:
    torch.save(_DropoutNet().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="not a training checkpoint"):
        TrainState.load(tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="does not exist"):
        TrainState.load(tmp_path / "missing.pt")
