"""``quanta verify`` on LeNet static and MobileNetV2 static: the integer-only reference executor
beside ONNX Runtime, op by op and end to end.

    python benchmarks/verify_models.py [--lenet FLOAT.onnx] [--samples-lenet 2000]
                                       [--samples-mobilenet 64] [--out benchmarks/results]

Without --lenet it trains LeNet with ``quanta train``'s defaults first (~1 min). MobileNetV2
comes from ``benchmarks/real_models`` (wheel cache). Writes ``verify.md`` and ``verify.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent / "real_models"))
from prepare import DEFAULT_CACHE, prepare_mobilenet  # noqa: E402

from quanta.cli import main as quanta_main  # noqa: E402
from quanta.data import calibration_split, load_mnist  # noqa: E402
from quanta.graph import CalibrationData, QuantizeConfig, load_model, quantize_static  # noqa: E402
from quanta.ref import run_reference, verify  # noqa: E402
from quanta.ref.verify import VerifyReport  # noqa: E402
from quanta.runtime import describe_machine  # noqa: E402


def _rows(name: str, report: VerifyReport, rounding: str) -> list[str]:
    rows = []
    for out_name, o in report.outputs.items():
        e2e = o.end_to_end
        assert e2e is not None
        rows.append(
            f"| {name} | {rounding} | {out_name} (output) | {o.grid} | {o.op_by_op.values:,} | "
            f"{o.equal_fraction:.5%} | {o.max_diff_steps} | {e2e.equal_fraction:.3%} | "
            f"{e2e.max_diff_steps} | {e2e.cosine:.6f} |"
        )
    tensors = list(report.tensors.values())
    if tensors:
        worst = min(t.equal_fraction for t in tensors)
        steps = max(t.max_diff_steps or 0 for t in tensors)
        values = sum(t.op_by_op.values for t in tensors)
        rows.append(
            f"| {name} | {rounding} | all {len(tensors)} int8 tensors | — | {values:,} | "
            f"≥ {worst:.5%} | {steps} | | | |"
        )
    return rows


def _ort(model: onnx.ModelProto, x: np.ndarray, level: ort.GraphOptimizationLevel) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, {"image": x})[0], np.float64)


def _agreement(model: onnx.ModelProto, x: np.ndarray) -> float:
    """Top-1 agreement of the AVX2-emulated run with the exact integer run."""
    exact = run_reference(model, {"image": x}).outputs["logits"]
    avx2 = run_reference(model, {"image": x}, emulate_avx2=True).outputs["logits"]
    return float(np.mean(exact.argmax(1) == avx2.argmax(1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet", help="float LeNet ONNX (default: train one now)")
    parser.add_argument("--samples-lenet", type=int, default=2000)
    parser.add_argument("--samples-mobilenet", type=int, default=64)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports: dict[str, dict[str, VerifyReport]] = {}

    with tempfile.TemporaryDirectory(prefix="quanta-verify-") as tmp:
        lenet = Path(args.lenet) if args.lenet else Path(tmp) / "lenet.onnx"
        if not args.lenet and quanta_main(["train", "-o", str(lenet)]) != 0:
            return 1
        ds = load_mnist()
        calib = calibration_split(ds.train, 500, seed=0).images
        model = quantize_static(load_model(lenet), CalibrationData({"image": calib})).model
        feeds = {"image": ds.test.images[: args.samples_lenet]}
        reports["LeNet static"] = {
            r: verify(model, feeds, rounding=r) for r in ("single", "double")
        }

    paths = prepare_mobilenet(Path(args.cache))
    calib_mb = dict(np.load(paths["calib"]))
    model = quantize_static(load_model(paths["model"]), CalibrationData(calib_mb)).model
    ev = np.load(paths["eval"])["image"][: args.samples_mobilenet]
    reports["MobileNetV2 static"] = {"single": verify(model, {"image": ev}, rounding="single")}
    # the same model as an AVX2 CPU without VNNI would run it, with full-range and 7-bit weights
    saturation = {}
    for weight_range in ("full", "reduced"):
        config = QuantizeConfig(weight_range=weight_range)  # type: ignore[arg-type]
        variant = quantize_static(load_model(paths["model"]), CalibrationData(calib_mb), config)
        emulated = verify(variant.model, {"image": ev[:16]}, emulate_avx2=True)
        hit = sum(s for s, _ in emulated.saturation.values())
        total = sum(t for _, t in emulated.saturation.values())
        ops = sum(1 for s, _ in emulated.saturation.values() if s)
        effect = emulated.saturation_effect["logits"]
        top1 = _agreement(variant.model, ev[:16])
        saturation[weight_range] = (hit, total, ops, len(emulated.saturation), effect.cosine, top1)
    # ONNX Runtime against itself: its float emulation of the QDQ graph (no fusion) vs its
    # integer kernels, the yardstick for the end-to-end figure
    fused = _ort(model, ev, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    unfused = _ort(model, ev, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    ort_self = float((fused * unfused).sum() / np.sqrt((fused**2).sum() * (unfused**2).sum()))

    machine = describe_machine()
    lines = [
        "# quanta verify: integer-only reference executor vs ONNX Runtime",
        "",
        f"Machine: {machine}. Command: `python benchmarks/verify_models.py`.",
        "",
        "*Op by op*: each integer op cut out with its weights and QDQ nodes and run by both "
        "runtimes on the same integer inputs. *End to end*: each runtime alone from the model "
        "input. Steps are of the tensor's own grid; a float output written by an integer op "
        "(the logits of QGemm) is compared on its int32 accumulator.",
        "",
        "| model | rounding | tensor | grid | values | equal (op by op) | max steps | "
        "equal (end to end) | max steps (e2e) | cosine (e2e) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    doc: dict[str, object] = {"machine": machine, "models": {}}
    for name, by_rounding in reports.items():
        for rounding, report in by_rounding.items():
            lines += _rows(f"{name} ({report.samples} samples)", report, rounding)
            doc["models"][f"{name} / {rounding}"] = report.as_dict()  # type: ignore[index]
    lines.append("")
    for name, by_rounding in reports.items():
        report = next(iter(by_rounding.values()))
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(report.integer_ops.items()))
        floats = ", ".join(f"{k}×{v}" for k, v in sorted(report.float_ops.items())) or "none"
        lines.append(f"- {name}: integer kernels {ops}; float ops {floats}.")
    mb_e2e = reports["MobileNetV2 static"]["single"].outputs["logits"].end_to_end
    mb_cosine = mb_e2e.cosine if mb_e2e is not None else float("nan")
    lines += [
        "",
        "## What the differences are",
        "",
        "- **Op by op, one step at most, on a few values in a million.** ONNX Runtime "
        "requantizes an int32 accumulator by multiplying it with a float32 multiplier and "
        "rounding half to even; the reference uses the 31-bit fixed-point multiplier and integer "
        "rounding. With single rounding they differ only where the exact result lies within "
        "float32 error of a .5 tie. With gemmlowp's double rounding (TFLite's reference "
        "kernels) a value just below a tie can also round up (e.g. 3.49996 -> 4), which is the "
        "extra ~0.02 % on LeNet's first conv.",
        "- **Logits.** The float logits of QGemm are compared on their int32 accumulator: equal "
        "op by op (the accumulator is exact in both). End to end, a one-step difference in one "
        "of the 1,024 inputs of the last layer moves a logit by up to 127 accumulator units "
        "(a few thousandths in value): hence the large step counts with cosine 1.000000.",
        f"- **MobileNetV2 end to end** (cosine {mb_cosine:.6f}): "
        "16 convolutions that quanta keeps float (with their ReLU6 as Clip and 2 Adds) run in "
        "float in both runtimes, with different summation orders; their outputs are then "
        "quantized, and a float difference near a rounding tie becomes a one-step difference "
        "that propagates through 50 layers. ONNX Runtime's own float emulation of the same QDQ "
        f"graph differs from its integer kernels by as much: cosine {ort_self:.6f}. Top-1 is "
        "unaffected.",
        "- **Saturation.** This CPU has AVX-512 VNNI: ONNX Runtime's u8 x s8 kernels accumulate "
        "in int32 exactly, and no difference above one step was found. On AVX2 CPUs without "
        "VNNI, `vpmaddubsw` adds pairs of u8 x s8 products in saturating int16; there the "
        "op-by-op comparison would show differences of more than one step. `quanta verify "
        "--emulate-avx2` computes Conv/Gemm/MatMul that way (pairs of neighbours along the "
        "reduction, in NHWC im2col order for convolutions; depthwise kernels accumulate in "
        "int32) on MobileNetV2 (16 evaluation crops, every layer int8):",
        "",
        "| weights | accumulators saturated | ops hit | logits cosine to the exact run | "
        "top-1 agreement with the exact run |",
        "|---|---|---|---|---|",
        *(
            f"| {w} ({'[-127, 127]' if w == 'full' else '[-64, 64], --weight-range reduced'}) | "
            f"{h:,} of {t:,} ({h / t:.2%}) | {o} of {n} | {c:.4f} | {a:.1%} |"
            for w, (h, t, o, n, c, a) in saturation.items()
        ),
        "",
        "  This is why `--weight-range auto` stores 7-bit weights when quanta runs on such a CPU "
        "(this one has VNNI, so it keeps full int8 here).",
    ]
    lines.append("")
    (out_dir / "verify.md").write_text("\n".join(lines) + "\n")
    (out_dir / "verify.json").write_text(json.dumps(doc, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
