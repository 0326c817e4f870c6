"""Calibration of MobileNetV2 on 2,016 samples with 1 and 2 worker processes: wall time,
speed-up, and whether the result is the same.

    python benchmarks/distributed.py [--cache DIR] [--out benchmarks/results]

The 2,016 samples are the 168 calibration crops of ``benchmarks/real_models`` (never used for
evaluation) with horizontal flips and small shifts. Each run is ``quantize_static`` with
calibration dominating (no accuracy search, fixed activation type): min-max, whose merged
result must be byte-identical, and percentile, whose histograms merge by re-binning.
Fidelity is measured on the 384 evaluation crops. Writes ``distributed.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent / "real_models"))
from prepare import DEFAULT_CACHE, prepare_mobilenet  # noqa: E402

from quanta.graph import CalibrationData, QuantizeConfig, load_model, quantize_static  # noqa: E402
from quanta.runtime import describe_machine, fidelity, make_session  # noqa: E402


def _augmented(crops: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples from ``crops``: each crop, its mirror, and shifts of a few pixels."""
    out = []
    shifts = [(0, 0), (4, 0), (0, 4), (-4, 0), (0, -4), (4, 4)]
    for dy, dx in shifts:
        for flip in (False, True):
            batch = crops[..., ::-1] if flip else crops
            out.append(np.roll(batch, (dy, dx), axis=(2, 3)))
    return np.ascontiguousarray(np.concatenate(out)[:n], dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--samples", type=int, default=2016)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = prepare_mobilenet(Path(args.cache))
    model = load_model(paths["model"])
    calib = _augmented(np.load(paths["calib"])["image"], args.samples)
    ev = np.load(paths["eval"])["image"]
    reference = make_session(model.SerializeToString()).run(None, {"image": ev})[0]
    rows, doc = [], {}
    for method in ("minmax", "percentile"):
        runs = {}
        for workers in (1, 2):
            config = QuantizeConfig(method=method, min_fidelity=None, activation_type="uint8",
                                    workers=workers)  # fmt: skip
            t0 = time.perf_counter()
            result = quantize_static(model, CalibrationData({"image": calib}), config)
            seconds = time.perf_counter() - t0
            blob = result.model.SerializeToString()
            out = make_session(blob).run(None, {"image": ev})[0]
            f = fidelity(out, reference, classifier=True)
            runs[workers] = {
                "seconds": seconds,
                "sha256": hashlib.sha256(blob).hexdigest(),
                "cosine_mean": f.cosine_mean,
                "top1_agreement": f.top1_agreement,
            }
            print(f"{method}, {workers} worker(s): {seconds:.1f} s, cosine {f.cosine_mean:.5f}",
                  flush=True)  # fmt: skip
        one, two = runs[1], runs[2]
        same = one["sha256"] == two["sha256"]
        rows.append(
            f"| {method} | {one['seconds']:.1f} | {two['seconds']:.1f} | "
            f"{one['seconds'] / two['seconds']:.2f}× | {one['cosine_mean']:.5f} / "
            f"{two['cosine_mean']:.5f} | {100 * one['top1_agreement']:.1f} % / "
            f"{100 * two['top1_agreement']:.1f} % | {'yes' if same else 'no'} |"
        )
        doc[method] = runs
    machine = describe_machine()
    lines = [
        "# Calibration in worker processes (MobileNetV2, quantize_static)",
        "",
        f"Machine: {machine}. Command: `python benchmarks/distributed.py`. {len(calib):,} "
        "calibration samples (168 crops, mirrored and shifted); fidelity on the 384 "
        "evaluation crops; no accuracy search, uint8 activations.",
        "",
        "| method | 1 worker s | 2 workers s | speed-up | cosine (1 / 2) | top-1 agreement "
        "(1 / 2) | byte-identical |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "- min-max merges exactly (min of minima, max of maxima): the files must be identical. "
        "Percentile histograms merge by re-binning onto a common grid (tolerance: two bins of "
        "the final grid per range end, tested), so the model can differ in the last bits of a "
        "scale.",
        "- Each worker is a separate process with one ONNX Runtime thread; the single-process "
        "run uses ONNX Runtime's default threads (both cores).",
        "- QAT under torch.distributed (the other half of issue 8) is not built yet.",
        "",
    ]
    (out_dir / "distributed.md").write_text("\n".join(lines))
    (out_dir / "distributed.json").write_text(
        json.dumps({"machine": machine, "samples": len(calib), "runs": doc}, indent=2) + "\n"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
