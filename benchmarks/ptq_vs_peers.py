"""quanta's static int8 vs ONNX Runtime's own quantizer, on the same float LeNet, in one run.

Both quantizers get the same float model and the same 500 calibration digits (class-balanced,
seed 0, from the bundled training set); both produce QDQ models with int8 per-channel weights and
int8 activations, calibrated min-max (ORT: ``quantize_static(QuantFormat.QDQ, per_channel=True,
CalibrationMethod.MinMax)``, after ORT's recommended ``quant_pre_process``). Both run in the same
ONNX Runtime session setup, 1 thread, timed interleaved.

    python benchmarks/ptq_vs_peers.py [--model lenet.onnx] [--out benchmarks/results]

Without --model it trains LeNet with `quanta train`'s defaults first (~30 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from quanta.cli import main as quanta_main
from quanta.data import calibration_split, load_mnist
from quanta.graph import CalibrationData, QuantizeConfig, load_model, save_model
from quanta.graph import quantize_static as quanta_quantize_static
from quanta.report import bench_markdown, bench_table
from quanta.runtime import EvalSet, bench_models, describe_machine

CALIBRATION_SAMPLES = 500


class _Reader(CalibrationDataReader):
    def __init__(self, name: str, images: np.ndarray) -> None:
        self._it = iter([{name: images[i : i + 1]} for i in range(len(images))])

    def get_next(self):  # type: ignore[no-untyped-def]
        return next(self._it, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="float LeNet ONNX (default: train one now)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_mnist()
    calib = calibration_split(ds.train, CALIBRATION_SAMPLES, seed=0).images

    with tempfile.TemporaryDirectory(prefix="quanta-peers-") as tmp:
        work = Path(tmp)
        float_path = Path(args.model) if args.model else work / "lenet.onnx"
        if not args.model:
            rc = quanta_main(["train", "-o", str(float_path)])
            if rc != 0:
                return rc
        model = load_model(float_path)
        name = model.graph.input[0].name

        times = []
        for _ in range(3):  # the first run also pays one-time imports and ORT start-up
            t0 = time.perf_counter()
            ours = quanta_quantize_static(model, CalibrationData({name: calib}), QuantizeConfig())
            times.append(time.perf_counter() - t0)
        quanta_s = float(np.median(times))
        ours_path = work / "quanta_static.onnx"
        save_model(ours.model, ours_path)

        t0 = time.perf_counter()
        pre = work / "ort_pre.onnx"
        quant_pre_process(str(float_path), str(pre))
        ort_path = work / "ort_static.onnx"
        quantize_static(
            str(pre), str(ort_path), _Reader(name, calib),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip
        ort_s = time.perf_counter() - t0

        data = EvalSet({name: ds.test.images}, ds.test.labels, "MNIST t10k (bundled)")
        results = bench_models(
            [float_path, ort_path, ours_path], data, batches=(1, 256), threads=1,
            names=["float", "onnxruntime static", "quanta static"], budget_s=6.0,
            reference=float_path,
        )  # fmt: skip

    fl, ort_r, ours_r = results
    ratio = {b: ours_r.latency[b].p50_ms / ort_r.latency[b].p50_ms for b in (1, 256)}
    machine = describe_machine()
    from rich.console import Console

    console = Console(width=160)
    console.print(
        bench_table(results, title=f"LeNet PTQ, {len(data):,} MNIST test images; {machine}")
    )
    lines = [
        f"quantize time (500 calibration images): quanta {quanta_s:.2f} s (median of 3; first "
        f"{times[0]:.2f} s), onnxruntime {ort_s:.2f} s",
        f"latency quanta/onnxruntime: batch 1 {ratio[1]:.3f}, batch 256 {ratio[256]:.3f} "
        "(<= 1.05 required)",
        f"accuracy quanta - onnxruntime: {100 * (ours_r.accuracy - ort_r.accuracy):+.2f} pp "
        "(>= 0 required)",
        f"size float/quanta: {fl.size_bytes / ours_r.size_bytes:.3f}x, float/onnxruntime: "
        f"{fl.size_bytes / ort_r.size_bytes:.3f}x",
        *[
            f"fidelity to the float model, {r.name}: top-1 agreement "
            f"{100 * f['top1_agreement']:.2f} %, logit cosine {f['cosine_mean']:.6f}, SQNR "
            f"{f['sqnr_db']:.1f} dB"
            for r in (ort_r, ours_r)
            for f in [r.extra["fidelity"]["logits"]]  # type: ignore[index]
        ],
    ]
    for line in lines:
        console.print(line)
    md = [
        "# PTQ: quanta vs ONNX Runtime's quantizer (LeNet, MNIST)",
        "",
        f"Machine: {machine}. One thread; latency is the median (p90) of interleaved runs.",
        f"Command: `python benchmarks/ptq_vs_peers.py`. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        bench_markdown(results),
        *[f"- {line}" for line in lines],
        "",
    ]
    (out_dir / "ptq_vs_peers.md").write_text("\n".join(md))
    doc = {
        "machine": machine,
        "quantize_seconds": {"quanta": quanta_s, "onnxruntime": ort_s},
        "latency_ratio_quanta_over_ort": {str(k): v for k, v in ratio.items()},
        "models": [r.as_dict() for r in results],
    }
    (out_dir / "ptq_vs_peers.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out_dir / 'ptq_vs_peers.md'} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
