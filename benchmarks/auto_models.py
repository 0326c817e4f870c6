"""``quanta quantize --mode auto`` on LeNet, MobileNetV2 and all-MiniLM-L6-v2: the target met,
and batch-1 latency against the faster of the float and the fully int8 model.

    python benchmarks/auto_models.py [--lenet FLOAT.onnx] [--cache DIR] [--out benchmarks/results]

Targets: LeNet, at most 0.1 pp of top-1 accuracy lost on the MNIST test set; MobileNetV2 and
MiniLM, issue 4's fidelity (mean cosine of the outputs to float >= 0.985 and >= 0.99) on their
evaluation data. All candidates of one model are timed interleaved in the same rounds.
Writes ``auto.md`` and ``auto.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent / "real_models"))
from prepare import DEFAULT_CACHE, prepare_minilm, prepare_mobilenet  # noqa: E402

from quanta.cli import main as quanta_main  # noqa: E402
from quanta.data import calibration_split, load_mnist  # noqa: E402
from quanta.graph import CalibrationData, load_model  # noqa: E402
from quanta.graph.auto import AutoResult, AutoTarget, quantize_auto  # noqa: E402
from quanta.runtime import describe_machine  # noqa: E402


def _row(name: str, target: str, r: AutoResult, seconds: float) -> tuple[str, dict[str, object]]:
    by = {c.name: c for c in r.candidates}
    chosen, flt, full = by[r.chosen], by["float"], by["static (all int8)"]
    best = min(flt.latency_ms, full.latency_ms)
    ratio = chosen.latency_ms / best
    meets = "yes" if chosen.meets else "NO"
    line = (
        f"| {name} | {target} | {r.chosen} | {chosen.score:.4f} | {meets} "
        f"| {chosen.latency_ms:.3f} | {flt.latency_ms:.3f} | {full.latency_ms:.3f} "
        f"({full.score:.4f}, {'meets' if full.meets else 'misses'}) | {ratio:.3f} | "
        f"{chosen.size_bytes / 1e6:.2f} MB | {seconds:.0f} s |"
    )
    doc = {
        "target": target,
        "measure": r.measure,
        "target_value": r.target,
        "chosen": r.chosen,
        "ratio_to_faster_of_float_and_full_int8": ratio,
        "candidates": [
            {
                "name": c.name,
                "score": c.score,
                "meets": c.meets,
                "latency_ms": c.latency_ms,
                "size_bytes": c.size_bytes,
                "detail": c.detail,
            }
            for c in r.candidates
        ],  # fmt: skip
        "float_nodes": [str(f) for f in r.float_nodes],
        "notes": r.notes,
        "seconds": seconds,
    }
    return line, doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet", help="float LeNet ONNX (default: train one now)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    docs: dict[str, object] = {}

    def run(name: str, target_text: str, *a: object, **kw: object) -> None:
        t0 = time.perf_counter()
        result = quantize_auto(*a, **kw)  # type: ignore[arg-type]
        line, doc = _row(name, target_text, result, time.perf_counter() - t0)
        rows.append(line)
        docs[name] = doc
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="quanta-auto-") as tmp:
        lenet = Path(args.lenet) if args.lenet else Path(tmp) / "lenet.onnx"
        if not args.lenet and quanta_main(["train", "-o", str(lenet)]) != 0:
            return 1
        ds = load_mnist()
        calib = CalibrationData({"image": calibration_split(ds.train, 500, seed=0).images})
        run(
            "LeNet", "top-1 drop <= 0.1 pp (MNIST test)", load_model(lenet), calib,
            {"image": ds.test.images}, AutoTarget(max_accuracy_drop=0.1), labels=ds.test.labels,
        )  # fmt: skip

    cache = Path(args.cache)
    mb = prepare_mobilenet(cache)
    run(
        "MobileNetV2", "cosine >= 0.985", load_model(mb["model"]),
        CalibrationData(dict(np.load(mb["calib"]))), dict(np.load(mb["eval"])),
        AutoTarget(min_fidelity=0.985),
    )  # fmt: skip
    lm = prepare_minilm(cache)
    run(
        "all-MiniLM-L6-v2", "cosine >= 0.99", load_model(lm["model"]),
        CalibrationData(dict(np.load(lm["calib"]))), dict(np.load(lm["eval"])),
        AutoTarget(min_fidelity=0.99),
    )  # fmt: skip

    machine = describe_machine()
    lines = [
        "# quanta quantize --mode auto: accuracy- and latency-aware",
        "",
        f"Machine: {machine}; batch 1, 1 thread, median of interleaved runs. "
        "Command: `python benchmarks/auto_models.py`.",
        "",
        "| model | target | chosen | score | meets | auto ms | float ms | all-int8 ms (score) | "
        "auto / faster of float and all-int8 | size | auto took |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Every candidate, and what auto decided",
        "",
    ]
    for name, doc in docs.items():
        lines.append(f"### {name}")
        lines.append("")
        lines += [f"- {note.strip()}" for note in doc["notes"]]  # type: ignore[attr-defined]
        lines += [f"- {node}" for node in doc["float_nodes"]]  # type: ignore[attr-defined]
        lines.append("")
    (out_dir / "auto.md").write_text("\n".join(lines) + "\n")
    (out_dir / "auto.json").write_text(
        json.dumps({"machine": machine, "models": docs}, indent=2) + "\n"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
