"""``quanta quantize``: post-training quantization of any ONNX model (static, dynamic, fp16, or
auto: the fastest variant meeting an accuracy target)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from quanta._io import check_output_path
from quanta.cli.console import add_force, err, out, progress
from quanta.cli.datasets import DEFAULT_CALIBRATION_SAMPLES, is_mnist_shaped
from quanta.errors import InputError

if TYPE_CHECKING:  # the CLI imports the library when a command runs, to start fast
    import onnx

    from quanta.graph import CalibrationData, QuantizeConfig, QuantizeResult
    from quanta.graph.auto import AutoTarget
    from quanta.runtime import EvalSet

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("quantize", help="quantize an ONNX model (static, dynamic or fp16)")
    # the groups add their flags in the order --help lists them
    _add_mode_flags(p)
    _add_range_flags(p)
    _add_fallback_flags(p)
    _add_format_flags(p)
    p.add_argument("--samples", type=int, help="use at most N calibration samples")
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="name every node left float (default: one line per reason, with a count)",
    )  # fmt: skip
    add_force(p)
    p.set_defaults(handler=run)


def _add_mode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        help="the float model: .onnx, .tflite, or with quanta[tf] .keras, .h5 or a SavedModel "
        "directory",
    )  # fmt: skip
    p.add_argument(
        "-o", "--output", required=True,
        help="the file to write: OUT.onnx, or OUT.tflite (NHWC; --mode static: full integer, "
        "fp16: float16 weights, dynamic: int8 weights with hybrid kernels)",
    )  # fmt: skip
    p.add_argument(
        "--mode", default="static",
        help="static | dynamic | fp16 | auto (default static). auto: the fastest of float, "
        "weight-only, dynamic and static variants (with layers kept float for accuracy or "
        "speed) that meets --max-accuracy-drop or --min-fidelity on --eval, measured here",
    )  # fmt: skip
    p.add_argument("--eval", help="--mode auto: EVAL.npz (inputs, optional labels) or mnist")
    p.add_argument(
        "--max-accuracy-drop", type=float,
        help="--mode auto: allowed top-1 accuracy drop in percentage points (needs labels)",
    )  # fmt: skip


def _add_range_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calibration",
        help="npz with one array per model input (keyed by input name, samples on axis 0)",
    )
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    p.add_argument(
        "--activation-type", default="auto",
        help="auto | int8 | uint8 (default auto: int8 unless ONNX Runtime runs more of the model "
        "in integer kernels with uint8)",
    )  # fmt: skip
    p.add_argument(
        "--method", default="auto",
        help="activation range: auto | minmax | percentile | entropy | mse (default auto: the "
        "one whose model is closest to float on held-out calibration samples)",
    )  # fmt: skip
    p.add_argument("--percentile", type=float, default=99.99,
                   help="kept percentile for --method percentile (default 99.99)")  # fmt: skip


def _add_fallback_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-fidelity", type=float,
        help="static: keep the most damaging nodes float until the outputs' mean cosine to the "
        "float model reaches this on held-out calibration samples (default 0.997); auto: the "
        "target mean cosine on --eval (default 0.99 when --eval has no labels)",
    )  # fmt: skip
    p.add_argument(
        "--max-float", type=int,
        help="keep at most N nodes float to reach --min-fidelity (default: a quarter of them)",
    )  # fmt: skip
    p.add_argument("--no-fallback", action="store_true",
                   help="quantize every node quanta can, whatever the fidelity")  # fmt: skip
    p.add_argument("--no-bias-correction", action="store_true",
                   help="do not correct biases for weight rounding")  # fmt: skip
    p.add_argument(
        "--weight-rounding", default="nearest",
        help="nearest | gptq | auto: static: round each int8 weight to its nearest value "
        "(default), or choose the roundings of each Conv/Gemm/MatMul that change its output on "
        "the calibration samples least (GPTQ; slower to quantize); auto: GPTQ only where the "
        "model misses its fidelity target with nearest rounding and GPTQ comes closer",
    )  # fmt: skip
    p.add_argument(
        "--equalize", action="store_true",
        help="static: cross-layer equalization first: consecutive convolutions joined by "
        "Relu/LeakyRelu/PRelu get equal per-channel weight ranges, the float function unchanged "
        "(helps per-tensor weights; measured no gain with the default per-channel ones)",
    )  # fmt: skip
    p.add_argument(
        "--no-latency-check", action="store_true",
        help="static: do not profile float and int8 at batch 1 on this machine, nor keep float "
        "the layers whose int8 kernel runs slower (quantizes faster)",
    )  # fmt: skip


def _add_format_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input-uint8", action="store_true",
        help="-o OUT.tflite with --mode static: a uint8 input on the float input's int8 grid "
        "shifted by 128 (as TensorFlow's converter with inference_input_type=uint8)",
    )  # fmt: skip
    p.add_argument(
        "--no-compact", action="store_true",
        help="write every scale and zero point as its own initializer (larger file; for QDQ "
        "readers that do not fold constants). Default: all-zero zero points are left out and "
        "bias scales are computed in the graph as input scale x weight scale",
    )  # fmt: skip
    p.add_argument(
        "--weight-range", default="auto",
        help="auto | full | reduced: int8 weights in [-127, 127] or 7-bit [-64, 64]; auto is "
        "reduced on x86 CPUs with AVX2 but no VNNI, whose u8 x s8 kernels add pairs of products "
        "in saturating int16, full elsewhere (default auto)",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, default=1,
        help="calibrate in N processes, each on its share of the samples, statistics merged "
        "(min-max exactly, histograms on a common grid; default 1)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from quanta.api import Quantized, load_path, source_size

    config = _config(args)
    _check_flags(args, config)
    output = check_output_path(
        args.output, args.model, *[p for p in (args.calibration, args.eval) if p and p != "mnist"],
        force=args.force,
    )  # fmt: skip
    if output.suffix.lower() == ".tflite" and config.mode == "auto":
        raise InputError(
            f"-o {str(output)!r}: a .tflite file is written from --mode static, fp16 or "
            "dynamic, not --mode auto; write .onnx instead"
        )
    notes = []
    if output.suffix.lower() == ".tflite" and config.latency_check:
        # NOTE: the check times ONNX Runtime's kernels; a .tflite runs in LiteRT, whose int8
        # kernels are another matter, so its choices would be made for the wrong runtime.
        config = dataclasses.replace(config, latency_check=False)
        notes.append(
            "latency check not applied: it times ONNX Runtime, and a .tflite runs in LiteRT "
            "(quanta bench the .tflite against the float one to compare)"
        )
    model = load_path(args.model)
    start = time.perf_counter()
    result = _quantized(args, model, config)
    result.notes[:0] = notes
    quantized = Quantized(
        result.model, mode=config.mode, chosen=getattr(result, "chosen", ""), source=model
    )
    if output.suffix.lower() == ".tflite":
        quantized.save(output, input_uint8=args.input_uint8)
    else:
        # NOTE: any suffix but .tflite writes ONNX, as `quanta quantize` always has
        from quanta.graph import save_model

        save_model(result.model, output)
    before, after = source_size(args.model), output.stat().st_size
    _print_float_nodes(result, args.verbose)
    for note in result.notes:
        err.print(note)
    if result.fidelity is not None:
        level = "[cyan]note:[/]" if result.fidelity.met else "[yellow]warning:[/]"
        err.print(f"{level} {result.fidelity.summary()}")
    chosen = getattr(result, "chosen", "")
    label = f"{config.mode} ({chosen})" if chosen else config.mode
    ratio = f"{before / after:.2f}× smaller" if after < before else "not smaller than float"
    out.print(
        f"{label}: wrote {output} ({after / 1e6:.2f} MB, {ratio}) "
        f"in {time.perf_counter() - start:.2f} s"
    )
    if after >= before:
        # NOTE: quanta stores every weight it can as int8, once; a file that did not shrink
        # holds something quanta did not foresee (a duplicated or unreadable weight).
        err.print(
            f"[yellow]warning:[/] the written model ({after / 1e6:.2f} MB) is not smaller than "
            f"the float input ({before / 1e6:.2f} MB)"
        )
    return 0


def _config(args: argparse.Namespace) -> QuantizeConfig:
    """The flags as a ``QuantizeConfig`` (one field per flag)."""
    from quanta.graph import QuantizeConfig

    return QuantizeConfig(
        mode=args.mode,
        per_channel=not args.per_tensor,
        activation_type=args.activation_type,
        method=args.method,
        percentile=args.percentile,
        bias_correction=not args.no_bias_correction,
        min_fidelity=None
        if args.no_fallback
        else (
            args.min_fidelity if args.min_fidelity is not None and args.mode == "static" else 0.997
        ),
        samples=args.samples,
        compact=not args.no_compact,
        weight_range=args.weight_range,
        max_float=args.max_float,
        workers=args.workers,
        latency_check=not args.no_latency_check,
        weight_rounding=args.weight_rounding,
        equalize=args.equalize,
    )


def _check_flags(args: argparse.Namespace, config: QuantizeConfig) -> None:
    """Flags given to a mode that does not use them."""
    if args.calibration and config.mode not in ("static", "auto"):
        raise InputError(
            f"--calibration is only used with --mode static or auto, not --mode {config.mode}"
        )
    if config.mode != "auto" and (args.eval or args.max_accuracy_drop is not None):
        raise InputError("--eval and --max-accuracy-drop are only used with --mode auto")
    if not config.latency_check and config.mode != "static":
        raise InputError(
            f"--no-latency-check is only used with --mode static, not --mode {config.mode}"
        )
    if config.weight_rounding != "nearest" and config.mode not in ("static", "auto"):
        raise InputError(
            f"--weight-rounding {config.weight_rounding} is only used with --mode static or "
            f"auto, not --mode {config.mode}"
        )
    if config.equalize and config.mode not in ("static", "auto"):
        raise InputError(
            f"--equalize is only used with --mode static or auto, not --mode {config.mode}"
        )
    if config.mode == "auto" and not args.eval:
        raise InputError("--mode auto needs --eval EVAL.npz (or mnist) to measure accuracy on")
    if args.input_uint8 and (config.mode != "static" or Path(args.output).suffix != ".tflite"):
        raise InputError(
            "--input-uint8 is only used with --mode static and -o OUT.tflite (a full-integer "
            "TFLite model)"
        )


def _quantized(
    args: argparse.Namespace, model: onnx.ModelProto, config: QuantizeConfig
) -> QuantizeResult:
    """``quanta.api.run_mode`` on the flags' data, static and auto behind a progress bar."""
    from quanta.api import run_mode

    if config.mode not in ("static", "auto"):
        return run_mode(model, config, None)
    data = _calibration_data(args, model, config)
    auto = _auto_inputs(args, model) if config.mode == "auto" else None
    with progress() as bar:
        task = bar.add_task("calibrating", total=None)

        def on_search(done: int, total: int) -> None:
            bar.update(task, description="measuring each node's cost", completed=done,
                       total=total)  # fmt: skip

        return run_mode(
            model, config, data, auto,
            on_batch=lambda done, total: bar.update(task, completed=done, total=total),
            on_search=on_search,
            on_step=lambda msg: bar.update(task, description=msg),
        )  # fmt: skip


def _calibration_data(
    args: argparse.Namespace, model: onnx.ModelProto, config: QuantizeConfig
) -> CalibrationData:
    """``--calibration``, or bundled MNIST digits for a model that takes 1x28x28 images."""
    from quanta.api import check_layout
    from quanta.data import calibration_split, load_mnist, load_npz
    from quanta.graph import CalibrationData

    if args.calibration:
        initializers = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in initializers]
        arrays, _ = load_npz(
            args.calibration, input_names=names, stream=True,
            on_note=lambda message: err.print(f"note: {message}"),
        )  # fmt: skip
        check_layout(model, arrays)
        return CalibrationData(arrays, samples=config.samples, batch_size=config.batch_size)
    if is_mnist_shaped(model):
        n = config.samples or DEFAULT_CALIBRATION_SAMPLES
        split = calibration_split(load_mnist().train, n, seed=0)
        name = next(i.name for i in model.graph.input)
        data = CalibrationData({name: split.images}, batch_size=config.batch_size)
        err.print(
            f"no --calibration given: calibrating on {n} bundled MNIST training digits "
            "(the model takes 1x28x28 images)"
        )
        return data
    raise InputError(
        f"--mode {config.mode} needs --calibration CALIB.npz (one array per model input, "
        "keyed by input name, samples along axis 0)"
    )


def _print_float_nodes(result: QuantizeResult, verbose: bool) -> None:
    """One line per reason (a count and an example), or one per node with ``--verbose``;
    choices quanta measured and float that costs nothing are notes, the rest warnings."""
    from rich.markup import escape

    from quanta.report.float_nodes import group_float_nodes

    groups = group_float_nodes(result.float_nodes)
    for group in groups:
        level = "[yellow]warning:[/]" if group.warning else "[cyan]note:[/]"
        if verbose:
            for node in group.nodes:
                err.print(f"{level} {escape(str(node))}")
        else:
            err.print(f"{level} {escape(group.line())}")
    if not verbose and any(g.count > 1 for g in groups):
        err.print("(--verbose names every node left float)")


def _describe(target: AutoTarget) -> str:
    """``target`` in words: "allowing a 0.5 pp accuracy drop" or "mean output cosine >= 0.99"."""
    if target.max_accuracy_drop is not None:
        return f"allowing a {target.max_accuracy_drop:g} pp top-1 accuracy drop"
    return f"requiring a mean output cosine to float of at least {target.min_fidelity:g}"


def _auto_inputs(args: argparse.Namespace, model: onnx.ModelProto) -> tuple[EvalSet, AutoTarget]:
    """``--mode auto``: the evaluation data and the target from the flags."""
    from quanta.api import auto_target
    from quanta.cli.datasets import eval_set

    inits = {t.name for t in model.graph.initializer}
    ev = eval_set(args.eval, [i.name for i in model.graph.input if i.name not in inits])
    target, default = auto_target(ev.labels, args.max_accuracy_drop, args.min_fidelity)
    if default:
        err.print(
            f"no target given: {_describe(target)} (see --max-accuracy-drop / --min-fidelity)"
        )
    return ev, target
