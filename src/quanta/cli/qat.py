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
    p.add_argument(
        "--checkpoint",
        metavar="STATE.pt",
        help="write the training state here after every epoch (rank 0, atomically)",
    )
    p.add_argument(
        "--resume",
        metavar="STATE.pt",
        help="continue from a --checkpoint file (the epochs after it, up to --epochs)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine (torch.distributed, gloo); the same as "
        "`torchrun --standalone --nproc-per-node N -m quanta qat ...`",
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


def _rank_args(args: argparse.Namespace) -> list[str]:
    """The ``quanta qat`` arguments each launched rank runs with (``--nproc`` left out)."""
    argv = ["quanta", "qat"] + ([args.model] if args.model else [])
    if args.from_lenet:
        argv += ["--from-lenet", args.from_lenet]
    argv += ["-o", args.output, "--epochs", str(args.epochs), "--quant-delay",
             str(args.quant_delay), "--learning-rate", repr(args.learning_rate),
             "--seed", str(args.seed)]  # fmt: skip
    for flag, value in (("--data", args.data), ("--checkpoint", args.checkpoint),
                        ("--resume", args.resume)):  # fmt: skip
        if value:
            argv += [flag, value]
    return argv + ["--input-uint8"] * args.input_uint8 + ["--force"] * args.force


def run(args: argparse.Namespace) -> int:
    import torch

    from quanta.data import load_mnist
    from quanta.distributed import launch_local, launched_by_torchrun, process_group
    from quanta.models import TrainConfig
    from quanta.qat import QATConfig, prepare_qat

    config = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed)
    qat_config = QATConfig(quant_delay=args.quant_delay)
    inputs = [p for p in (args.model, args.from_lenet, args.resume) if p]
    output = check_output_path(args.output, *inputs, force=args.force)
    if args.checkpoint and not _same_file(args.checkpoint, args.resume):
        # (a checkpoint that continues its own --resume file replaces it, as training goes on)
        check_output_path(args.checkpoint, *inputs, output, force=args.force)
    if args.nproc is not None and launched_by_torchrun():
        raise InputError("--nproc launches the ranks itself; under torchrun leave it out")
    if args.nproc is not None and args.nproc < 1:
        raise InputError(f"--nproc must be >= 1, got {args.nproc}")
    net = load_lenet(args.model, args.from_lenet)
    ds = load_mnist(args.data)
    torch.manual_seed(config.seed)
    qat = prepare_qat(net, qat_config)
    resume = _load_resume(args.resume, qat, config) if args.resume else None
    if args.nproc is not None and args.nproc > 1:
        # Everything a rank could refuse was checked above, so a rank fails only on a bug.
        return launch_local(args.nproc, ["-m", *_rank_args(args)])
    if not launched_by_torchrun():
        return _train_and_export(args, qat, ds, config, resume, output, rank=0, world=1)
    with process_group() as (rank, world):
        return _train_and_export(args, qat, ds, config, resume, output, rank, world)


def _same_file(a: str, b: str | None) -> bool:
    return b is not None and Path(a).resolve() == Path(b).resolve()


def _load_resume(path: str, qat, config):  # type: ignore[no-untyped-def]
    """The --resume state, refused if it does not fit the QAT model (into which it is loaded)
    or has nothing left to train."""
    from quanta.models import TrainState

    state = TrainState.load(path)
    try:
        qat.load_state_dict(state.model)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"--resume {path!r} does not fit this QAT LeNet: {first}") from exc
    if state.epoch >= config.epochs:
        raise InputError(
            f"--resume {path!r} already holds {state.epoch} epoch(s); ask for more with "
            f"--epochs (got {config.epochs})"
        )
    return state


def _train_and_export(  # type: ignore[no-untyped-def]
    args: argparse.Namespace, qat, ds, config, resume, output: Path, rank: int, world: int
) -> int:
    """Fine-tune (this rank's share of every global batch); rank 0 evaluates and writes."""
    import torch

    from quanta.models import TrainState, evaluate
    from quanta.qat import export_qat_onnx, train_qat

    start = time.perf_counter()

    def on_epoch(state: TrainState) -> None:
        if rank == 0:  # one writer; every rank's dropout stream is in the state
            state.save(args.checkpoint)

    with progress(disable=rank > 0) as bar:
        title = "QAT fine-tuning" + (f" ({world} processes)" if world > 1 else "")
        task = bar.add_task(title, total=None)
        train_qat(
            qat, ds.train.images, ds.train.labels, config, quant_delay=args.quant_delay,
            on_step=lambda s, t, loss: bar.update(task, completed=s, total=t),
            on_epoch=on_epoch if args.checkpoint else None, resume=resume,
        )  # fmt: skip
    if rank > 0:
        return 0  # one writer: rank 0 holds the same weights and ranges
    seconds = time.perf_counter() - start
    acc = evaluate(qat, ds.test.images, ds.test.labels)
    sample = torch.from_numpy(ds.train.images[:64])
    _, notes = export_qat_onnx(qat, output, sample, uint8_input=args.input_uint8)
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    kind = "uint8-input int8" if args.input_uint8 else "int8"
    ranks = f", {world} processes" if world > 1 else ""
    out.print(
        f"QAT LeNet: fake-quant test accuracy {100 * acc:.2f} % "
        f"({seconds:.1f} s training{ranks}); wrote {kind} model {output}"
    )
    return 0
