"""Seeded training loop of the reference models (Adam, cross-entropy, random-shift augmentation)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from quanta._io import write_bytes_atomic
from quanta.errors import InputError, ModelError

__all__ = ["TrainConfig", "evaluate", "load_checkpoint", "save_checkpoint", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``shift`` is the largest random translation (pixels) used as augmentation."""

    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    shift: int = 2

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise InputError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.shift < 0:
            raise InputError(f"shift must be >= 0 pixels, got {self.shift}")


def _random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels in x and y (zero fill)."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (shift, shift, shift, shift))  # (N, C, H+2s, W+2s)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # (N, 1, 1, W)
    idx_n = torch.arange(n)[:, None, None, None]
    return padded[idx_n, torch.arange(x.shape[1])[None, :, None, None], rows, cols]


def train(
    model: nn.Module,
    images: npt.NDArray[np.float32],
    labels: npt.NDArray[np.integer],
    config: TrainConfig,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
    step_fn: Callable[[nn.Module, int], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place with Adam on ``(images, labels)``; return it in eval mode.

    Deterministic for a given ``config.seed`` on CPU: shuffling and augmentation draw from one
    seeded generator, and PyTorch is asked for deterministic algorithms.

    Args:
        on_step: called as ``on_step(step, total_steps, loss)`` after every optimizer step.
        step_fn: called as ``step_fn(model, step)`` before every forward pass (QAT uses it to
            switch fake quantization on after the quant delay).
    """
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(config.seed)
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(x_all)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    total = steps_per_epoch * config.epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    model.train()
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            x = _random_shift(x_all[idx], config.shift, generator)
            if step_fn is not None:
                step_fn(model, step)
            loss = nn.functional.cross_entropy(model(x), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step, total, float(loss.detach()))
    model.eval()
    return model


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: npt.NDArray[np.float32],
    labels: npt.NDArray[np.integer],
    batch_size: int = 1000,
) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(torch.from_numpy(images[start : start + batch_size]))
        correct += int((logits.argmax(1).numpy() == labels[start : start + batch_size]).sum())
    return correct / len(images)


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write the model's ``state_dict`` (tensors only, loadable with ``weights_only=True``)."""
    # NOTE: torch.save names the zip's root folder after the file; saving to memory first keeps
    # it constant ("archive"), so the same weights give the same bytes whatever the path.
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a ``state_dict`` into ``model``; never unpickles code (``weights_only=True``)."""
    if not os.path.isfile(path):
        raise ModelError(f"checkpoint {os.fspath(path)!r} does not exist; expected a .pt file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"checkpoint {os.fspath(path)!r} is not a weights-only PyTorch state dict ({first})"
        ) from exc
    if not isinstance(state, dict):
        raise ModelError(
            f"checkpoint {os.fspath(path)!r} holds a {type(state).__name__}, "
            "expected a state_dict (a dict of tensors)"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"checkpoint {os.fspath(path)!r} does not fit the model: {first}") from exc
    return model
