"""Quantization-aware fine-tuning: observe ranges during the quant delay, then fake-quantize."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from torch import nn

from quanta.models.train import TrainConfig, TrainState, train
from quanta.qat.prepare import set_qat_state

__all__ = ["train_qat"]


def train_qat(
    qat_model: nn.Module,
    images: npt.NDArray[np.float32],
    labels: npt.NDArray[np.integer],
    config: TrainConfig,
    *,
    quant_delay: int = 0,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[TrainState], None] | None = None,
    resume: TrainState | None = None,
) -> nn.Module:
    """Fine-tune a ``prepare_qat`` model; fake quantization switches on at step ``quant_delay``.

    ``on_epoch`` and ``resume`` are ``train``'s: a checkpoint after each epoch, and continuing
    from one (the QAT ranges and the fake-quant switch included).
    """
    steps_per_epoch = (len(images) + config.batch_size - 1) // config.batch_size
    first_step = 0 if resume is None else resume.epoch * steps_per_epoch
    set_qat_state(qat_model, fake_quant=first_step >= quant_delay, observe=True)

    def step_fn(model: nn.Module, step: int) -> None:
        if step == quant_delay and quant_delay > 0:
            set_qat_state(model, fake_quant=True)

    train(qat_model, images, labels, config, on_step=on_step, step_fn=step_fn,
          on_epoch=on_epoch, resume=resume)  # fmt: skip
    set_qat_state(qat_model, fake_quant=True)
    return qat_model
