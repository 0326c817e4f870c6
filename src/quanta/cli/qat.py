"""``quanta qat``: quantization-aware fine-tuning of LeNet, exported as an int8 QDQ ONNX model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from quanta._io import check_output_path
from quanta.cli.console import add_force, err, out, progress
from quanta.errors import InputError, ModelError

__all__ = ["add_parser", "load_lenet"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("qat", help="quantization-aware fine-tuning from a float LeNet")
    p.add_argument(
        "model", nargs="?", help="float LeNet ONNX from `quanta train` (its .pt beside it)"
    )
    p.add_argument("--from-lenet", metavar="CHECKPOINT", help="start from a LeNet state_dict .pt")
    p.add_argument("-o", "--output", required=True, help="the int8 QDQ ONNX file to write")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    p.add_argument(
        "--quant-delay",
        type=int,
        default=20,
        help="steps that only observe ranges before fake quantization starts (default 20)",
    )
    p.add_argument(
        "--learning-rate", type=float, default=1e-4, help="Adam learning rate (default 1e-4)"
    )
    p.add_argument("--data", help="MNIST directory with the four IDX files (default: bundled)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--input-uint8", action="store_true", help="the model takes raw uint8 pixels 0..255"
    )
    add_force(p)
    p.set_defaults(handler=run)


def load_lenet(model: str | None, checkpoint: str | None):  # type: ignore[no-untyped-def]
    """LeNet with float weights from ``--from-lenet``, the .pt beside the ONNX file, or the ONNX
    file's own initializers (a LeNet exported by quanta keeps the PyTorch parameter names)."""
    import numpy as np
    import torch
    from onnx import numpy_helper

    from quanta.graph import load_model
    from quanta.models import LeNet, load_checkpoint

    net = LeNet()
    if (model is None) == (checkpoint is None):
        raise InputError("give either MODEL.onnx or --from-lenet CHECKPOINT (exactly one)")
    if checkpoint is not None:
        return load_checkpoint(net, checkpoint)
    assert model is not None
    beside = Path(model).with_suffix(".pt")
    if beside.is_file():
        return load_checkpoint(net, beside)
    proto = load_model(model)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    state = net.state_dict()
    if set(state) - set(inits) or any(inits[k].shape != tuple(v.shape) for k, v in state.items()):
        raise ModelError(
            f"{model!r} is not a LeNet exported by quanta and has no {beside.name} beside it; "
            "pass --from-lenet CHECKPOINT"
        )
    net.load_state_dict({k: torch.from_numpy(np.array(inits[k])) for k in state})
    return net


def run(args: argparse.Namespace) -> int:
    import torch

    from quanta.data import load_mnist
    from quanta.models import TrainConfig, evaluate
    from quanta.qat import QATConfig, export_qat_onnx, prepare_qat, train_qat

    config = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed)
    qat_config = QATConfig(quant_delay=args.quant_delay)
    inputs = [p for p in (args.model, args.from_lenet) if p]
    output = check_output_path(args.output, *inputs, force=args.force)
    net = load_lenet(args.model, args.from_lenet)
    ds = load_mnist(args.data)
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    qat = prepare_qat(net, qat_config)
    with progress() as bar:
        task = bar.add_task("QAT fine-tuning", total=None)
        train_qat(
            qat, ds.train.images, ds.train.labels, config, quant_delay=qat_config.quant_delay,
            on_step=lambda s, t, loss: bar.update(task, completed=s, total=t),
        )  # fmt: skip
    acc = evaluate(qat, ds.test.images, ds.test.labels)
    sample = torch.from_numpy(ds.train.images[:64])
    _, notes = export_qat_onnx(qat, output, sample, uint8_input=args.input_uint8)
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    kind = "uint8-input int8" if args.input_uint8 else "int8"
    out.print(
        f"QAT LeNet: fake-quant test accuracy {100 * acc:.2f} % "
        f"({time.perf_counter() - start:.1f} s); wrote {kind} model {output}"
    )
    return 0
