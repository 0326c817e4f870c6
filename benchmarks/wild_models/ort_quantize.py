"""ONNX Runtime's own quantizer on one model, as a peer for quanta (run in a child process).

    python benchmarks/wild_models/ort_quantize.py static MODEL.onnx OUT.onnx --calibration C.npz
    python benchmarks/wild_models/ort_quantize.py dynamic MODEL.onnx OUT.onnx

static: ``quant_pre_process`` (ORT's recommended shape inference and optimization), then
``quantize_static`` in QDQ format, int8 per-channel weights, int8 activations, MinMax, fed
the calibration samples one at a time (fixed-batch models take no other batch) through a
``CalibrationDataReader``. If ``quant_pre_process`` fails, the model is quantized as it is and
a line starting "note:" says so. dynamic: ``quantize_dynamic`` with its defaults (int8
weights, per tensor). Any failure: one line "error: ..." on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def _reader(arrays: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            n = len(next(iter(arrays.values())))
            self._it = iter([{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self._it, None)

    return Reader()


def ort_static(model: Path, out: Path, calibration: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with np.load(calibration) as c:
        arrays = dict(c)
    with tempfile.TemporaryDirectory(prefix="ort-quantize-") as tmp:
        source = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(model), str(source))
        except Exception as exc:  # noqa: BLE001  (ORT's optional step; the quantizer goes on)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"note: quant_pre_process failed ({type(exc).__name__}: {first[:120]}); "
                  "quantized the model as exported", file=sys.stderr)  # fmt: skip
            source = model
        ort_quantize_static(
            str(source), str(out), _reader(arrays),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip


def ort_dynamic(model: Path, out: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(model), str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("static", "dynamic"))
    parser.add_argument("model")
    parser.add_argument("output")
    parser.add_argument("--calibration", help="npz, one array per input (static only)")
    args = parser.parse_args(argv)
    if args.mode == "static" and not args.calibration:
        print(
            "error: static needs --calibration C.npz (one array per model input)", file=sys.stderr
        )
        return 2
    try:
        if args.mode == "static":
            ort_static(Path(args.model), Path(args.output), Path(args.calibration))
        else:
            ort_dynamic(Path(args.model), Path(args.output))
    except Exception as exc:  # noqa: BLE001  (the peer's failure is a result, in one line)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {first[:300]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
