"""``quanta export-tflite``: a full-integer TFLite model from quanta's int8 ONNX, no TensorFlow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from quanta._io import check_output_path, write_bytes_atomic
from quanta.cli.console import add_force, err, out
from quanta.errors import InputError

if TYPE_CHECKING:
    import onnx

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export-tflite", help="write a full-integer TFLite model (NHWC) from a static int8 model"
    )
    p.add_argument("model", help="quantized ONNX model (quanta static or qat)")
    p.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    p.add_argument(
        "--input-uint8", action="store_true",
        help="take raw uint8 inputs 0..255 (for a model whose float input is in [0, 1])",
    )  # fmt: skip
    p.add_argument(
        "--calibration",
        help="X.npz or mnist: samples to measure the range of float outputs written by integer "
        "ops (quanta's float logits) and of Softmax/Sigmoid inputs, which TFLite must hold in int8",
    )  # fmt: skip
    add_force(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    from quanta.cli.datasets import eval_set
    from quanta.graph import load_model
    from quanta.graph.dynamic_float import float_matmuls
    from quanta.graph.uint8_input import with_uint8_input
    from quanta.graph.weight_only import calibrated_int8, computes_int8, decoded_weights
    from quanta.runtime import feeds_for, make_session
    from quanta.tflite import onnx_to_tflite
    from quanta.tflite.ranges import measure_ranges, recorded_ranges

    inputs = [
        args.model,
        *([args.calibration] if args.calibration and args.calibration != "mnist" else []),
    ]
    output = check_output_path(args.output, *inputs, force=args.force)
    if output.suffix != ".tflite":
        raise InputError(f"output {str(output)!r} should end in .tflite")
    model = load_model(args.model)
    if not computes_int8(model) and decoded_weights(model):
        return _write_dynamic_range(args, model, output)
    if not calibrated_int8(model) and float_matmuls(model):  # dynamic int8 Gemm/MatMul
        return _write_dynamic_range(args, model, output, dynamic=True)
    # the float tensors TFLite holds in int8 (outputs, Softmax inputs): measured on
    # --calibration, else the ranges `quanta quantize` recorded in the model
    ranges = recorded_ranges(model)
    if args.calibration:
        inits = {t.name for t in model.graph.initializer}
        data = eval_set(
            args.calibration, [i.name for i in model.graph.input if i.name not in inits]
        )
        feeds = feeds_for(make_session(model.SerializeToString()), data)
        ranges = measure_ranges(model, {k: v[:500] for k, v in feeds.items()})
    if args.input_uint8:
        model = with_uint8_input(model)
    data_bytes = onnx_to_tflite(model, ranges)
    write_bytes_atomic(output, data_bytes)
    out.print(f"export-tflite: wrote {output} ({len(data_bytes) / 1e6:.2f} MB)")
    err.print("inputs are NHWC (channels last); outputs keep the ONNX model's layout")
    return 0


def _write_dynamic_range(
    args: argparse.Namespace, model: onnx.ModelProto, output: Path, dynamic: bool = False
) -> int:
    """A model whose every layer computes in float with int8-stored weights (what static mode
    writes where int8 compute buys no speed or loses the answers, and dynamic mode for a Conv
    model), or with its Gemm/MatMul in dynamic int8 (``dynamic``: read back as float MatMul by
    ``float_matmuls``): its TFLite counterpart is LiteRT's dynamic-range form, int8 weights and
    float activations, run by LiteRT's hybrid kernels, which quantize their inputs on every run
    as ONNX Runtime's dynamic int8 kernels do."""
    from quanta.tflite.float_convert import float_onnx_to_tflite

    what = (
        "quantizes only at run time (its Gemm/MatMul in dynamic int8, the other layers in float "
        "with int8-stored weights)"
        if dynamic
        else "computes every layer in float with int8-stored weights"
    )
    if args.input_uint8:
        raise InputError(
            f"--input-uint8 needs a model that quantizes its input; {args.model} {what}"
        )
    data_bytes = float_onnx_to_tflite(model, "dynamic")
    write_bytes_atomic(output, data_bytes)
    out.print(f"export-tflite: wrote {output} ({len(data_bytes) / 1e6:.2f} MB)")
    err.print(
        f"{args.model} {what}, so the file is LiteRT's dynamic-range form: int8 weights, float "
        "activations (hybrid kernels)"
    )
    err.print("inputs are NHWC (channels last); outputs keep the ONNX model's layout")
    return 0
