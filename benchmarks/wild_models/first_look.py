"""A first look: ``quanta quantize --mode static`` on each corpus model, default flags.

    python benchmarks/wild_models/first_look.py [--cache DIR] [--only NAME ...]

Runs ``python -m quanta quantize NAME.onnx -o TMP --mode static --calibration
NAME_calib.npz`` as a new user would, and prints a Markdown table row per model: exit code,
seconds, size ratio (float / int8), warning and note lines, the first error line, quanta's
own fidelity line, and the int8
model's task score against the float model on NAME_eval.npz (ONNX Runtime, CPU). A
"warning" or "note" line is one that starts with that word.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import sources  # noqa: E402
from corpus import CORPUS  # noqa: E402
from prepare import run_per_sample  # noqa: E402


def look(name: str, cache: Path, out: Path) -> dict[str, object]:
    model, calib = cache / f"{name}.onnx", cache / f"{name}_calib.npz"
    cmd = [sys.executable, "-m", "quanta", "quantize", str(model), "-o", str(out)]
    cmd += ["--mode", "static", "--calibration", str(calib)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    lines = (proc.stdout + proc.stderr).splitlines()
    warnings = [line for line in lines if line.startswith("warning")]
    notes = [line for line in lines if line.startswith("note")]
    errors = [
        line
        for line in lines
        if line.lower().startswith(("error", "quanta: error", "traceback", "internal error"))
        or "error:" in line.lower()
    ]
    fidelity = [line for line in lines if line.startswith("fidelity")]
    return {
        "rc": proc.returncode,
        "seconds": seconds,
        "ratio": model.stat().st_size / out.stat().st_size if out.exists() else None,
        "warnings": len(warnings),
        "notes": len(notes),
        "error": errors[0][:200] if errors else "",
        "fidelity": fidelity[0] if fidelity else "",
        "log": "\n".join(lines),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(sources.DEFAULT_CACHE))
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--logs", help="folder to write each model's full quantize output to")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    print(
        "| model | exit | s | size ratio | warning / note lines | error "
        "| quanta's fidelity line | int8 task score on eval |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for entry in CORPUS:
        if args.only and entry.name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"{entry.name}_int8.onnx"
            r = look(entry.name, cache, out)
            score = ""
            if out.exists():
                with np.load(cache / f"{entry.name}_eval.npz") as e:
                    ev = dict(e)
                try:
                    ref = run_per_sample(cache / f"{entry.name}.onnx", ev)
                    got = run_per_sample(out, ev)
                    value = entry.scorer(cache, cache / f"{entry.name}.onnx")(ref, got)
                    score = f"{entry.metric} {value:.4f}"
                except Exception as exc:  # noqa: BLE001  (a model ORT cannot run is a finding)
                    score = f"ORT cannot run it: {str(exc).splitlines()[0][:100]}"
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            (Path(args.logs) / f"{entry.name}.log").write_text(str(r["log"]))
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        print(
            f"| {entry.name} | {r['rc']} | {r['seconds']:.0f} | {ratio} "
            f"| {r['warnings']} / {r['notes']} | {r['error']} | {r['fidelity']} | {score} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
