"""``quanta train``: train LeNet on MNIST and export it to ONNX (plus a PyTorch checkpoint)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from quanta._io import check_output_path
from quanta.cli.console import add_force, err, out, progress

__all__ = ["add_parser", "checkpoint_path"]


def checkpoint_path(onnx_path: str | Path) -> Path:
    """Where ``quanta train`` keeps the float weights for QAT: beside the ONNX file, ``.pt``."""
    return Path(onnx_path).with_suffix(".pt")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train", help="train LeNet on MNIST and export it to ONNX")
    p.add_argument("-o", "--output", required=True, help="the ONNX file to write, e.g. lenet.onnx")
    p.add_argument("--data", help="MNIST directory with the four IDX files (default: bundled)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_force(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from quanta.data import load_mnist
    from quanta.models import LeNet, TrainConfig, evaluate, export_onnx, save_checkpoint, train

    config = TrainConfig(epochs=args.epochs, seed=args.seed)
    onnx_path = check_output_path(args.output, force=args.force)
    ckpt = check_output_path(checkpoint_path(onnx_path), force=args.force)
    ds = load_mnist(args.data)
    err.print(f"training LeNet on {len(ds.train):,} images ({ds.source}), {config.epochs} epochs")
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model = LeNet()
    with progress() as bar:
        task = bar.add_task("training", total=None)

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, description=f"training (loss {loss:.3f})")

        train(model, ds.train.images, ds.train.labels, config, on_step=on_step)
    acc = evaluate(model, ds.test.images, ds.test.labels)
    export_onnx(model, onnx_path, torch.zeros(1, 1, 28, 28))
    save_checkpoint(model, ckpt)
    out.print(
        f"float LeNet: test accuracy {100 * acc:.2f} % on {len(ds.test):,} images "
        f"({time.perf_counter() - start:.1f} s); wrote {onnx_path} and {ckpt}"
    )
    return 0
