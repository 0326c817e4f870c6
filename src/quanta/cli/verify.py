"""``quanta verify``: run a quantized model in the integer-only reference executor beside ONNX
Runtime and report, per output and per quantized tensor, how often they agree."""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING

from quanta._io import check_output_path, write_text_atomic
from quanta.cli.console import add_force, err, out
from quanta.errors import InputError

if TYPE_CHECKING:  # the CLI imports the library when a command runs, to start fast
    import numpy as np
    import onnx
    from rich.table import Table

    from quanta.ref import VerifyReport
    from quanta.ref.verify import OutputAgreement

__all__ = ["add_parser"]

# Quantized tensors listed without --verbose (the least equal ones; a count says the rest).
SHOWN = 16
# Tensor names listed in a sentence without --verbose.
FEW = 8


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help="run a quantized model with integer-only arithmetic beside ONNX Runtime and compare",
    )
    p.add_argument("model", help="quantized ONNX model (quanta's QDQ)")
    p.add_argument("--inputs", required=True, help="X.npz (one array per model input), or mnist")
    p.add_argument("--samples", type=int, help="use the first N samples (default: all)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help=f"list every quantized tensor (default: the outputs and the {SHOWN} least equal) "
        "and every op run in float (default: one line per reason, with a count)",
    )  # fmt: skip
    p.add_argument(
        "--emulate-avx2", action="store_true",
        help="also run Conv/Gemm/MatMul as an AVX2 CPU without VNNI does (u8 x s8 products "
        "added in pairs in saturating int16) and report where that saturates",
    )  # fmt: skip
    p.add_argument(
        "--rounding", default="single", choices=("single", "double"),
        help="fixed-point rounding: single (one rounding of the 64-bit product, default) or "
        "double (gemmlowp / TFLite reference kernels)",
    )  # fmt: skip
    add_force(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quanta.graph import load_model
    from quanta.ref import verify

    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    json_path = check_output_path(args.json, args.model, force=args.force) if args.json else None
    model = load_model(args.model)
    _check_quantized(args.model, model)
    feeds = _feeds(args, model)
    n = len(next(iter(feeds.values())))
    with err.status(f"running {n:,} samples in the reference executor and ONNX Runtime"):
        report = verify(model, feeds, rounding=args.rounding, emulate_avx2=args.emulate_avx2)
    title = f"{args.model}: integer reference vs ONNX Runtime, {n:,} samples"
    out.print(_table(report, title, None if args.verbose else SHOWN))
    _print_ops(report, args.verbose)
    if args.emulate_avx2:
        _print_saturation(report)
    out.print(
        "op by op: each op on the integers the reference computed for its inputs, in both "
        "runtimes; end to end: the two runtimes each from the model input. Differences of one "
        f"step are rounding ties ({args.rounding} rounding here; ONNX Runtime rounds a float32 "
        "product half to even)."
    )
    if json_path:
        doc = {"model": args.model, "rounding": args.rounding, **report.as_dict()}
        write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
        err.print(f"wrote {json_path}")
    return 0


# Integer ops of ONNX and ONNX Runtime besides the QLinear* family: any of them makes a model
# something to verify (QDQ, QOperator and dynamic int8 alike).
_INTEGER_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
     "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm"}
)  # fmt: skip


def _check_quantized(path: str, model: onnx.ModelProto) -> None:
    """A model with no int8 op has nothing to verify: say so instead of comparing floats; nor
    one whose only int8 ops quantize at run time, which the integer reference does not model."""
    from quanta.graph.weight_only import calibrated_int8, decoded_weights, run_time_int8

    if not calibrated_int8(model) and (dynamic := run_time_int8(model)):
        raise InputError(
            f"{path} quantizes only at run time: its {dynamic} dynamic int8 op(s) measure their "
            "input's range on every run, and the integer reference checks calibrated int8 grids "
            f"(QDQ or QLinear*) only; quanta bench {path} --reference FLOAT.onnx --data DATA "
            "measures it against float"
        )

    if not any(
        n.op_type in _INTEGER_OPS or n.op_type.startswith("QLinear") for n in model.graph.node
    ):
        if decoded := decoded_weights(model):
            raise InputError(
                f"{path} computes every layer in float: its {decoded} int8-stored weight(s) "
                "are decoded to float when the session starts, so no int8 arithmetic is left "
                f"to verify; quanta bench {path} --reference FLOAT.onnx --data DATA measures "
                "it against float"
            )
        raise InputError(
            f"{path} has no int8 ops (QuantizeLinear/DequantizeLinear or QLinear*): it is a "
            "float model; pass a quantized one (e.g. from quanta quantize)"
        )


def _feeds(args: argparse.Namespace, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """``--inputs`` as the model's feeds, cut to ``--samples``."""
    from quanta.cli.datasets import eval_set
    from quanta.runtime import feeds_for, make_session

    inits = {t.name for t in model.graph.initializer}
    data = eval_set(args.inputs, [i.name for i in model.graph.input if i.name not in inits])
    feeds = feeds_for(make_session(model.SerializeToString()), data)
    if args.samples is not None:
        feeds = {k: v[: args.samples] for k, v in feeds.items()}
    return feeds


def _steps(value: int | None) -> str:
    return "—" if value is None else str(value)


def _table(report: VerifyReport, title: str, shown: int | None) -> Table:
    """One row per output, then one per quantized tensor: with ``shown``, only that many, the
    least equal ones op by op (in graph order), and a caption for the rest."""
    from rich.table import Table

    tensors = list(report.tensors.items())
    rest: list[tuple[str, OutputAgreement]] = []
    if shown is not None and len(tensors) > shown:
        worst = set(sorted(range(len(tensors)), key=lambda i: tensors[i][1].equal_fraction)[:shown])
        rest = [t for i, t in enumerate(tensors) if i not in worst]
        tensors = [t for i, t in enumerate(tensors) if i in worst]
    caption = None
    if rest:
        low = min(t.equal_fraction for _, t in rest)
        steps = max((t.max_diff_steps or 0) for _, t in rest)
        caption = (
            f"{len(rest)} more quantized tensor(s), each at least {low:.4%} equal op by op and "
            f"at most {steps} step(s) apart (--verbose lists every one)"
        )
    table = Table(title=title, caption=caption)
    for column in (
        "tensor",
        "grid",
        "values",
        "equal (op by op)",
        "max steps",
        "equal (end to end)",
        "max steps (e2e)",
        "cosine (e2e)",
    ):
        table.add_column(column, justify="left" if column in ("tensor", "grid") else "right")
    for name, o in report.outputs.items():
        e2e = o.end_to_end
        table.add_row(
            f"[bold]{name}[/bold] (output)", o.grid, f"{o.op_by_op.values:,}",
            f"{o.equal_fraction:.4%}", _steps(o.max_diff_steps),
            f"{e2e.equal_fraction:.4%}" if e2e else "", _steps(e2e.max_diff_steps) if e2e else "",
            f"{e2e.cosine:.6f}" if e2e else "",
        )  # fmt: skip
    for name, t in tensors:
        table.add_row(
            name, t.grid, f"{t.op_by_op.values:,}", f"{t.equal_fraction:.4%}",
            _steps(t.max_diff_steps), "", "", "",
        )  # fmt: skip
    return table


def _print_ops(report: VerifyReport, verbose: bool) -> None:
    """Which ops ran in integers, and why any ran in float: one line per reason with a count
    and an example node, or with ``verbose`` one per node."""
    if report.from_float:
        names = report.from_float if verbose else report.from_float[:FEW]
        more = len(report.from_float) - len(names)
        out.print(
            f"{len(report.from_float)} tensor(s) are quantized from the output of a float op "
            "(no integer kernel to compare): "
            + ", ".join(names)
            + (f" and {more} more (--verbose lists them)" if more else "")
        )
    ops = ", ".join(f"{k}×{v}" for k, v in sorted(report.integer_ops.items()))
    if report.integer_only:
        out.print(f"integer-only: yes — integer kernels: {ops}")
    else:
        floats = ", ".join(f"{k}×{v}" for k, v in sorted(report.float_ops.items()))
        out.print(f"integer-only: no — float ops: {floats}; integer kernels: {ops}")
        if verbose:
            for node, why in report.float_reasons.items():
                out.print(f"  {node}: {why}")
            return
        groups: dict[str, list[str]] = {}
        for node, why in report.float_reasons.items():  # a tensor's name is the example's
            general = re.sub(r"'[^']*'", "…", re.sub(r"input '[^']*'", "an input", why))
            groups.setdefault(general, []).append(node)
        for why, nodes in groups.items():
            out.print(f"  {len(nodes)} op(s): {why} (e.g. {nodes[0]!r})")
        if len(groups) < len(report.float_reasons):
            out.print("  (--verbose names every op)")


def _print_saturation(report: VerifyReport) -> None:
    """``--emulate-avx2``: where int16 pair sums saturate, and what that does to the outputs."""
    hit = {n: st for n, st in report.saturation.items() if st[0]}
    total = sum(t for _, t in report.saturation.values())
    worst = sum(s for s, _ in report.saturation.values())
    out.print(
        f"AVX2 without VNNI (emulated): {worst:,} of {total:,} accumulators saturate in "
        f"{len(hit)} of {len(report.saturation)} Conv/Gemm/MatMul ops"
        + (": " + ", ".join(f"{n} {s / t:.3%}" for n, (s, t) in hit.items()) if hit else "")
    )
    for name, effect in report.saturation_effect.items():
        out.print(
            f"  effect on {name!r}: {effect.equal_fraction:.4%} equal to the exact result, "
            f"cosine {effect.cosine:.6f}"
        )
