"""Seeded training loop of the reference models (Adam, cross-entropy, random-shift augmentation)."""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from quanta._io import write_bytes_atomic
from quanta.distributed import batch_share, rank_and_world
from quanta.errors import InputError, ModelError

__all__ = [
    "TrainConfig",
    "TrainState",
    "evaluate",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]


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


def _draw_shifts(n: int, shift: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Per-image offsets ``(dy, dx)`` in ``0..2*shift`` for ``n`` images (nothing if no shift)."""
    if shift == 0:
        return ()
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    return dy, dx


def _apply_shifts(x: torch.Tensor, shift: int, offsets: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Translate each image by its drawn offset minus ``shift`` pixels in y and x (zero fill)."""
    if not offsets:
        return x
    dy, dx = offsets
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (shift, shift, shift, shift))  # (N, C, H+2s, W+2s)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # (N, 1, 1, W)
    idx_n = torch.arange(n)[:, None, None, None]
    return padded[idx_n, torch.arange(x.shape[1])[None, :, None, None], rows, cols]


@dataclass
class TrainState:
    """Everything needed to resume training after ``epoch`` completed epochs, bit for bit.

    ``rng`` holds every rank's global RNG state (dropout masks); a run resumed with another
    number of processes reseeds instead.
    """

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor  # the shuffling and augmentation generator, the same on every rank
    rng: list[torch.Tensor]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state atomically (a weights-only PyTorch file)."""
        buffer = io.BytesIO()
        torch.save({"quanta_train_state": 1, **vars(self)}, buffer)
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainState:
        if not os.path.isfile(path):
            raise ModelError(f"checkpoint {os.fspath(path)!r} does not exist; expected a .pt file")
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's fault
            raise ModelError(
                f"checkpoint {os.fspath(path)!r} is not a weights-only PyTorch file ({exc})"
            ) from exc
        if not isinstance(raw, dict) or raw.get("quanta_train_state") != 1:
            raise ModelError(
                f"checkpoint {os.fspath(path)!r} is not a training checkpoint written by "
                "`quanta qat --checkpoint`"
            )
        del raw["quanta_train_state"]
        return cls(**raw)


def train(
    model: nn.Module,
    images: npt.NDArray[np.float32],
    labels: npt.NDArray[np.integer],
    config: TrainConfig,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
    step_fn: Callable[[nn.Module, int], None] | None = None,
    on_epoch: Callable[[TrainState], None] | None = None,
    resume: TrainState | None = None,
) -> nn.Module:
    """Train ``model`` in place with Adam on ``(images, labels)``; return it in eval mode.

    Deterministic for a given ``config.seed`` on CPU: shuffling and augmentation draw from one
    seeded generator, and PyTorch is asked for deterministic algorithms.

    Under an initialized torch.distributed process group (``torchrun``; gloo on CPU) the model
    is wrapped in ``DistributedDataParallel`` and ``config.batch_size`` is the *global* batch:
    every rank draws the same shuffled order and augmentation, trains on its contiguous share
    of each batch, and the averaged gradient is the global batch's, so N processes take the
    steps one process takes (up to float summation order, and dropout masks, which are drawn
    per rank).

    Args:
        on_step: called as ``on_step(step, total_steps, loss)`` after every optimizer step.
        step_fn: called as ``step_fn(model, step)`` before every forward pass (QAT uses it to
            switch fake quantization on after the quant delay).
        on_epoch: called on every rank with the ``TrainState`` after each epoch (to write a
            checkpoint: rank 0 only, ``TrainState.save`` is atomic).
        resume: continue from this state: the model, the optimizer, the generators and the
            step count are restored, and training runs the epochs after ``resume.epoch``.
    """
    rank, world = rank_and_world()
    # Under torch.distributed the shuffling and augmentation generator is the same on every rank
    # (each takes its share of the same global batch); the global RNG, which draws dropout
    # masks, differs per rank so that the ranks' masks are independent.
    torch.manual_seed(config.seed + 1_000_003 * rank)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(config.seed)
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(x_all)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    total = steps_per_epoch * config.epochs
    # The fused kernel: one pass per parameter instead of a dozen (measured: a fifth of a QAT step).
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, fused=True)
    start_epoch = 0
    if resume is not None:
        start_epoch = _restore(resume, model, optimizer, generator, config.seed, rank, world)
    # DDP averages the ranks' gradients after backward; the ranges of QAT observers and
    # BatchNorm statistics are all-reduced by the modules themselves, so buffers need no
    # broadcast from rank 0 before each forward pass.
    net = (
        DDP(model, forward_sync_buffers=False, gradient_as_bucket_view=True) if world > 1 else model
    )
    model.train()
    step = start_epoch * steps_per_epoch
    # NOTE: the loop stays here in one piece (so train() runs past 60 lines, half of them the
    # docstring) to keep the order of the random draws in view: shuffle, shifts, then dropout in
    # the forward pass. That order makes a run reproducible and a resumed run continue bit for bit.
    for epoch in range(start_epoch, config.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            mine, x = _my_share(idx, x_all, config.shift, generator, rank, world)
            if step_fn is not None:
                step_fn(model, step)
            loss = _optimizer_step(net, optimizer, x, y_all[mine], len(idx), world)
            step += 1
            if on_step is not None or world > 1:
                _report_loss(loss, step, total, world, on_step)
        if on_epoch is not None:
            on_epoch(_state(epoch + 1, model, optimizer, generator, world))
    model.eval()
    return model


def _restore(
    resume: TrainState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    seed: int,
    rank: int,
    world: int,
) -> int:
    """Put the model, the optimizer and both random streams back; return the epoch to start."""
    model.load_state_dict(resume.model)
    optimizer.load_state_dict(resume.optimizer)
    generator.set_state(resume.generator)
    if len(resume.rng) == world:
        torch.set_rng_state(resume.rng[rank])
    else:  # another number of processes: dropout masks cannot continue the same stream
        torch.manual_seed(seed + 1_000_003 * rank + 7919 * resume.epoch)
    return resume.epoch


def _my_share(
    idx: torch.Tensor,
    x_all: torch.Tensor,
    shift: int,
    generator: torch.Generator,
    rank: int,
    world: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's sample indices of the global batch ``idx`` and their shifted images.

    Every rank draws the shifts of the whole global batch, so the shared generator stays in step.
    """
    offsets = _draw_shifts(len(idx), shift, generator)
    if world > 1:
        share = batch_share(len(idx), rank, world)
        offsets = tuple(o[share] for o in offsets)
        mine = idx[share]
    else:
        mine = idx
    return mine, _apply_shifts(x_all[mine], shift, offsets)


def _optimizer_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    global_batch: int,
    world: int,
) -> torch.Tensor:
    """One forward, backward and Adam step on this rank's share; return its loss."""
    logits = net(x)
    if world > 1:
        # The global batch's mean loss: DDP divides the summed gradients by the world
        # size, so each rank's summed loss is scaled by world / global batch size.
        ce = nn.functional.cross_entropy(logits, y, reduction="sum")
        loss = ce * (world / global_batch)
    else:
        loss = nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _report_loss(
    loss: torch.Tensor,
    step: int,
    total: int,
    world: int,
    on_step: Callable[[int, int, float], None] | None,
) -> None:
    """Pass the global batch's loss to ``on_step``; under DDP every rank must call this."""
    reported = loss.detach().clone()
    if world > 1:
        dist.all_reduce(reported)  # every rank takes part, reporting or not
        reported /= world
    if on_step is not None:
        on_step(step, total, float(reported))


def _state(
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    world: int,
) -> TrainState:
    rng = torch.get_rng_state()
    rngs = [rng]
    if world > 1:  # every rank's dropout stream, so that a resumed run continues each one
        rngs = [torch.empty_like(rng) for _ in range(world)]
        dist.all_gather(rngs, rng)
    return TrainState(
        epoch=epoch,
        model={k: v.detach().clone() for k, v in model.state_dict().items()},
        optimizer=copy.deepcopy(optimizer.state_dict()),
        generator=generator.get_state(),
        rng=rngs,
    )


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
