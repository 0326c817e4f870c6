"""How close to the float MobileNetV2 can an int8 model be on the evaluation crops? Top-1 agreement
of models that each change one thing, from float16 weights to quanta's shipped int8 model.

    python benchmarks/agreement_floor.py [--cache DIR] [--out benchmarks/results]

Issue 7 asks for >= 99 % top-1 agreement of MobileNetV2 in LiteRT with the float model. This
measures what limits it: the crops are photos that are mostly not ImageNet objects, so the float
model's top two classes are often close; any change of the weights moves some of those. Each
model is run in ONNX Runtime, and the int8 ones also as TFLite files (quanta's exporter) in
LiteRT. Writes ``agreement_floor.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent / "real_models"))
from prepare import DEFAULT_CACHE, prepare_mobilenet  # noqa: E402

from quanta.graph import (  # noqa: E402
    CalibrationData,
    QuantizeConfig,
    load_model,
    prepare,
    quantize_static,  # noqa: E402
)
from quanta.graph.fp16 import quantize_fp16  # noqa: E402
from quanta.graph.weight_only import compress_float_weights  # noqa: E402
from quanta.runtime import describe_machine, fidelity, make_session  # noqa: E402


def _onnx_logits(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {"image": images})[0]


def _litert_logits(
    model: onnx.ModelProto, images: np.ndarray, calib: np.ndarray
) -> np.ndarray | None:
    try:
        from quanta.runtime.litert import LiteRTSession
        from quanta.tflite.convert import onnx_to_tflite
    except ImportError:  # LiteRT is an extra
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        # the float logits' int8 range, measured on the calibration crops (`--calibration`)
        logits = _onnx_logits(model, calib)
        ranges = {"logits": (float(logits.min()), float(logits.max()))}
        path.write_bytes(onnx_to_tflite(model, ranges))
        session = LiteRTSession(path)
        chunks = [session.run(None, {"image": images[i : i + 32]})[0]
                  for i in range(0, len(images), 32)]  # fmt: skip
    return np.concatenate(chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    paths = prepare_mobilenet(Path(args.cache))
    model = load_model(paths["model"])
    ev = np.load(paths["eval"])["image"]
    calib = np.load(paths["calib"])["image"]
    reference = _onnx_logits(model, ev)
    top2 = np.sort(reference, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]

    weights_int8 = prepare(model)
    compress_float_weights(weights_int8, per_channel=True)
    shipped = quantize_static(model, CalibrationData({"image": calib}), QuantizeConfig()).model
    all_int8 = quantize_static(
        model, CalibrationData({"image": calib}), QuantizeConfig(min_fidelity=None)
    ).model
    candidates = {
        "float16 weights, float compute (`--mode fp16`)": (quantize_fp16(model).model, False),
        # (not a TFLite int8 model: quanta's exporter writes float layers only for Conv, Add,
        # ReLU and ReLU6, and this model keeps every layer float)
        "int8 weights (per channel), float activations and compute": (weights_int8, False),
        "quanta static, every layer int8 (`--no-fallback`)": (all_int8, True),
        "quanta static, default (16 layers kept float)": (shipped, True),
    }
    rows, doc = [], {}
    for name, (candidate, tflite) in candidates.items():
        runs = {"ONNX Runtime": _onnx_logits(candidate, ev)}
        if tflite:
            litert = _litert_logits(candidate, ev, calib)
            if litert is not None:
                runs["LiteRT (quanta's TFLite)"] = litert
        for runtime, logits in runs.items():
            f = fidelity(logits, reference, classifier=True)
            assert f.top1_agreement is not None
            flipped = logits.argmax(1) != reference.argmax(1)
            median_margin = float(np.median(margins[flipped])) if flipped.any() else float("nan")
            doc[f"{name} | {runtime}"] = {
                "top1_agreement": f.top1_agreement,
                "confident_top1_agreement": f.top1_agreement_confident,
                "cosine_mean": f.cosine_mean,
                "disagreements": int(flipped.sum()),
                "median_float_margin_of_disagreements": median_margin,
            }
            rows.append(
                f"| {name} | {runtime} | {100 * f.top1_agreement:.1f} % "
                f"({int(flipped.sum())} of {len(ev)}) | "
                f"{100 * (f.top1_agreement_confident or 0):.1f} % | {f.cosine_mean:.4f} | "
                f"{median_margin:.3f} |"
            )
            print(rows[-1], flush=True)
    int8_runs = [r for k, r in doc.items() if not k.startswith("float16")]
    confident = [r["confident_top1_agreement"] for r in int8_runs]
    quantiles = {q: float(np.quantile(margins, q)) for q in (0.01, 0.05, 0.1, 0.25, 0.5)}
    lines = [
        "# How close can an 8-bit MobileNetV2 be to the float one? (issue 7's 99 % criterion)",
        "",
        f"Machine: {describe_machine()}. Command: `python benchmarks/agreement_floor.py`. "
        f"{len(ev)} evaluation crops (`benchmarks/real_models`), calibration on the 168 other "
        "crops. Agreement: top-1 class equal to the float model's (ONNX Runtime, float32); "
        "confident: crops where the float model's top-1 probability is at least 0.5.",
        "",
        "The float model's margin between its top two logits on these crops: "
        + ", ".join(f"{int(100 * q)} % of crops below {v:.3f}" for q, v in quantiles.items())
        + ".",
        "",
        "| model | runtime | top-1 agreement | confident | cosine | median float margin of "
        "the crops that flip |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "- Rounding the weights alone to int8 (per channel, symmetric, the TFLite int8 spec) — "
        "with activations and arithmetic still float — already moves the top-1 class on about "
        "one crop in ten. So no model with int8 weights, whatever its activations, gets near "
        "99 % on these crops; only weights kept at 16 bits do. The crops that flip are those "
        "where the float model hardly prefers its top class (median margin in the last column "
        "against the distribution above).",
        "- Where the float model is confident (top-1 probability >= 0.5), the models with int8 "
        f"weights agree on {100 * min(confident):.1f} to {100 * max(confident):.1f} % of crops.",
        "",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "agreement_floor.md").write_text("\n".join(lines))
    (out / "agreement_floor.json").write_text(
        json.dumps(
            {"machine": describe_machine(), "margin_quantiles": quantiles, "runs": doc}, indent=2
        )
        + "\n"  # fmt: skip
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
