"""``quanta bench``: size, accuracy, latency and int8 kernels of models, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from quanta._io import check_output_path, write_text_atomic
from quanta.cli.console import add_force, err, out
from quanta.errors import InputError

if TYPE_CHECKING:  # the CLI imports the library when a command runs, to start fast
    import onnx

    from quanta.runtime import BenchResult

__all__ = ["add_parser", "parse_batches"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="measure models side by side (first one is the baseline)")
    p.add_argument("models", nargs="+", help="ONNX models; ratios are against the first")
    p.add_argument(
        "--data",
        help="mnist | MNIST directory | EVAL.npz (default mnist, for models that take 1x28x28 "
        "images; required otherwise)",
    )
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", default="1,256", help="batch sizes to time, e.g. 1,256 (default)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument(
        "--runtime", default="auto",
        help="auto | onnxruntime | litert: auto runs .onnx files in ONNX Runtime and .tflite "
        "files in LiteRT (pip install 'quanta[litert]'); the others insist on one",
    )  # fmt: skip
    p.add_argument(
        "--reference",
        help="float model to compare each model's outputs with (top-1 agreement, cosine, max "
        "error, SQNR)",
    )  # fmt: skip
    add_force(p)
    p.set_defaults(handler=run)


def parse_batches(value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise InputError(
            f"--batch {value!r} is not a list of positive integers; expected e.g. 1,256"
        )
    return sizes


def _check_takes_mnist(path: str, model: onnx.ModelProto) -> None:
    """Without ``--data`` the bundled MNIST test set is used: refuse, naming ``--data``, a
    model whose single input is not a batch of 1x28x28 images (NCHW or NHWC, any dtype)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    shapes = [
        [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
        for i in inputs
    ]
    if len(shapes) == 1 and shapes[0][1:] in ([1, 28, 28], [28, 28, 1]):
        return
    described = ", ".join(
        f"{i.name} ({', '.join('N' if d is None else str(d) for d in shape)})"
        for i, shape in zip(inputs, shapes, strict=True)
    )
    raise InputError(
        f"{path} takes {described}, not 1x28x28 MNIST images; pass --data EVAL.npz (one array "
        "per model input, keyed by input name, samples along axis 0)"
    )


def run(args: argparse.Namespace) -> int:
    # NOTE: the library loads when the command runs: `quanta --help` builds every command's
    # parser and should not pay for ONNX Runtime.
    from quanta.cli.datasets import eval_set
    from quanta.graph import load_model
    from quanta.report import bench_table, fidelity_table
    from quanta.runtime import bench_models, describe_machine
    from quanta.runtime.litert import LiteRTSession, is_tflite

    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    batches = parse_batches(args.batch)
    inputs = [*args.models, *([args.reference] if args.reference else [])]
    json_path = check_output_path(args.json, *inputs, force=args.force) if args.json else None
    if args.runtime not in ("auto", "onnxruntime", "litert"):
        raise InputError(f"--runtime {args.runtime!r}; expected auto, onnxruntime or litert")
    if args.reference:
        load_model(args.reference)
    _check_runtimes(args.models, args.runtime)
    loaded = {p: load_model(p) for p in args.models if not is_tflite(p)}  # fail early, clearly
    first = args.models[0]
    if is_tflite(first):
        names = [i.name for i in LiteRTSession(first).get_inputs()]
    else:
        inits = {t.name for t in loaded[first].graph.initializer}
        names = [i.name for i in loaded[first].graph.input if i.name not in inits]
    if args.data is None and not is_tflite(first):
        _check_takes_mnist(first, loaded[first])
    data = eval_set(args.data or "mnist", names)
    with err.status("benchmarking") as status:
        results = bench_models(
            args.models, data, batches=batches, threads=args.threads,
            on_step=lambda msg: status.update(msg), reference=args.reference,
        )  # fmt: skip
    machine = describe_machine()
    out.print(bench_table(results, title=f"{len(data):,} samples from {data.source}; {machine}"))
    _print_fixed_batches(results, batches)
    if args.reference:
        out.print(fidelity_table(results, title=f"fidelity against {args.reference}"))
    if json_path:
        doc = {
            "data": {"source": data.source, "samples": len(data)},
            "threads": args.threads,
            "machine": machine,
            "models": [r.as_dict() for r in results],
        }
        write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
        err.print(f"wrote {json_path}")
    return 0


def _check_runtimes(models: list[str], runtime: str) -> None:
    """Each model is a file the chosen runtime runs."""
    from quanta.runtime.litert import is_tflite

    for path in models:
        if is_tflite(path) and runtime == "onnxruntime":
            raise InputError(f"{path!r} is a TFLite model; --runtime onnxruntime runs .onnx files")
        if not is_tflite(path) and runtime == "litert":
            raise InputError(
                f"{path!r} is not a .tflite file; LiteRT runs TFLite models (make one with "
                "quanta export-tflite)"
            )
        if is_tflite(path) and not Path(path).is_file():
            raise InputError(f"model file {path!r} does not exist; expected a .tflite file")


def _print_fixed_batches(results: list[BenchResult], batches: list[int]) -> None:
    """One line per model whose inputs fix its batch: which asked sizes were not timed."""
    for r in results:
        fixed = r.extra.get("fixed_batch")
        skipped = [str(b) for b in batches if b != fixed]
        if fixed is not None and skipped:
            out.print(
                f"{r.name}: batch fixed to {fixed} by the model's inputs; timed at batch {fixed} "
                f"only (batch {', '.join(skipped)} not timed: the model refuses it)"
            )
