"""quanta beside ONNX Runtime's quantizer on every wild-corpus model: size, answers, speed, status.

    python benchmarks/wild_models.py [--cache DIR] [--models a,b] [--variants v1,v2]
                                     [--timeout S] [--budget S] [--out benchmarks/results]

For each model prepared by ``benchmarks/wild_models/prepare.py`` (NAME.onnx, NAME_calib.npz,
NAME_eval.npz in the cache), five variants, each quantized in a child process with a time
limit (so one model's failure or hang never stops the run):

- quanta_static:  ``quanta quantize NAME.onnx -o OUT --calibration NAME_calib.npz`` (default mode);
- quanta_dynamic: ``quanta quantize NAME.onnx -o OUT --mode dynamic``;
- quanta_auto:    ``... --mode auto --eval NAME_eval.npz --calibration NAME_calib.npz`` (auto's
  default target; auto chooses on the evaluation set, so its score there is not held out);
- ort_static:     ONNX Runtime's ``quantize_static`` (QDQ, per-channel, MinMax, the same
  calibration samples through a ``CalibrationDataReader``); ort_dynamic: ``quantize_dynamic``.

Measured: size ratio (float bytes / int8 bytes), the task score against the float model on the
evaluation set (``wild_models/scoring.py``, one sample at a time), batch-1 latency of all
variants and float timed interleaved in one thread (median) and the speed-up float / int8,
the quantize command's wall time, and status: ok, refused (quanta's one-line error, exit 2)
or error (anything else, with its one line). Writes ``wild_models.md`` (summary per variant
first, then per-model rows) and ``wild_models.json`` to ``--out``, atomically, after every
model; a run on a subset of models or variants is labelled partial.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "wild_models"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))
import bars  # noqa: E402
import scoring  # noqa: E402
import sources  # noqa: E402
from corpus import CORPUS, WildModel  # noqa: E402
from prepare import run_per_sample  # noqa: E402


def _command(variant: str, model: Path, calib: Path, ev: Path, out: Path) -> list[str]:
    quanta = [sys.executable, "-m", "quanta", "quantize", str(model), "-o", str(out)]
    ort = [sys.executable, str(HERE / "ort_quantize.py")]
    return {
        "quanta_static": [*quanta, "--calibration", str(calib)],
        "quanta_dynamic": [*quanta, "--mode", "dynamic"],
        "quanta_auto": [*quanta, "--mode", "auto", "--eval", str(ev), "--calibration", str(calib)],
        "ort_static": [*ort, "static", str(model), str(out), "--calibration", str(calib)],
        "ort_dynamic": [*ort, "dynamic", str(model), str(out)],
    }[variant]


def _first(lines: list[str], *starts: str) -> str:
    return next((line for line in lines if line.startswith(starts)), "")


def quantize(variant: str, cmd: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """Run one quantize command in ``out``'s folder (ONNX Runtime's ``quant_pre_process``
    leaves temporary files in the current directory); status, one-line message, wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=out.parent
        )
    except subprocess.TimeoutExpired:
        return {
            "status": "error",
            "message": f"timed out after {timeout:.0f} s",
            "quantize_s": None,
        }
    seconds = time.perf_counter() - t0
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode == 0 and out.exists():
        note = _first(lines, "note: quant_pre_process") or next(
            (line for line in lines if "not met" in line), ""
        )
        return {"status": "ok", "message": note, "quantize_s": seconds}
    if proc.returncode == 2 and variant.startswith("quanta"):
        message = _first(lines, "quanta: error") or (lines[-1] if lines else "")
        return {"status": "refused", "message": message, "quantize_s": seconds}
    message = (
        _first(lines, "quanta: internal error", "error:")
        or (lines[-1] if lines else "")
        or f"exit {proc.returncode} and no output file"
    )
    return {
        "status": "error",
        "message": f"exit {proc.returncode}: {message}",
        "quantize_s": seconds,
    }


def _one_line(exc: BaseException) -> str:
    # ONNX Runtime names the temporary file it failed to load: noise in a results table
    text = re.sub(r"Load model from \S+ failed: ?", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def measure_model(
    entry: WildModel, cache: Path, work: Path, variants: list[str], timeout: float, budget: float
) -> dict[str, Any]:
    """Quantize ``entry`` every way in ``variants``, then score and time what was written."""
    import onnx

    from quanta.runtime import interleaved_latency, make_session

    model, calib, ev_path = (
        cache / f"{entry.name}{s}" for s in (".onnx", "_calib.npz", "_eval.npz")
    )
    row: dict[str, Any] = {
        "name": entry.name, "metric": entry.metric, "kind": entry.kind,
        "exporter": entry.exporter, "float_mb": model.stat().st_size / 1e6,
        "heavy_share": bars.weight_share(onnx.load(str(model))), "float_ms": None, "variants": {},
    }  # fmt: skip
    outs = {v: work / f"{entry.name}_{v}.onnx" for v in variants}
    for v in variants:
        print(f"  {entry.name}: {v} ...", file=sys.stderr, flush=True)
        result = quantize(v, _command(v, model, calib, ev_path, outs[v]), outs[v], timeout)
        if result["status"] == "ok":
            result["size_ratio"] = model.stat().st_size / outs[v].stat().st_size
        row["variants"][v] = result
    with np.load(ev_path) as e:
        ev = dict(e)
    ref = run_per_sample(model, ev)
    scorer = entry.scorer(cache, model)
    truth = entry.truth(cache, model) if entry.truth else None
    timed = []
    for v, result in row["variants"].items():
        if result["status"] != "ok":
            continue
        try:
            out = run_per_sample(outs[v], ev)
            result["score"] = scorer(ref, out)
            if truth:
                result["truth"] = scoring.against_truth(*truth, ref, out)
            timed.append(v)
        except Exception as exc:  # noqa: BLE001  (a model ORT cannot run is a result)
            result.update(status="error", message=f"ONNX Runtime cannot run it: {_one_line(exc)}")
    try:
        sessions = [make_session(model, threads=1)] + [make_session(outs[v]) for v in timed]
        latency = interleaved_latency(sessions, ev, 1, budget_s=budget)
        row["float_ms"] = latency[0].p50_ms
        for v, lat in zip(timed, latency[1:], strict=True):
            row["variants"][v].update(p50_ms=lat.p50_ms, speedup=latency[0].p50_ms / lat.p50_ms)
    except Exception as exc:  # noqa: BLE001  (scores stand; the timing failure is reported)
        for v in timed:
            row["variants"][v]["message"] = f"timing failed: {_one_line(exc)}"
    return row


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_results(out: Path, doc: dict[str, Any]) -> None:
    rows, variants = doc["models"], doc["variants"]
    status = (
        f"**Partial run**: {doc['partial']}." if doc["partial"] else "Complete run: every model."
    )
    md = [
        "# Wild models: quanta vs ONNX Runtime's quantizer (issue 14)",
        "",
        status,
        "",
        f"Machine: {doc['machine']}; quanta at {doc['commit']}. "
        f"Command: `{doc['command']}`. Date: {doc['date']}.",
        "",
        "Size ratio = float bytes / int8 bytes. Score = the task metric against the float model "
        "on the evaluation set (never the calibration set; `--mode auto` chooses on that set, so "
        "its score is not held out). Speed-up = float / int8 median batch-1 latency, 1 thread, "
        "all variants of a model timed interleaved. Quantize s = wall time of the command, "
        "Python start-up included. Bars (issue 14): size >= 1.0x, or >= 3.5x where >= 90 % of "
        "the float weight bytes feed Conv/ConvTranspose/Gemm/MatMul/LSTM/GRU/Gather; answers "
        "top1 >= 0.97, text >= 0.95, detections >= 0.95, mask_iou >= 0.97, cosine >= 0.99; "
        "speed-up >= 1.0. Answers >= ORT: score at least ONNX Runtime's counterpart's "
        "(static and auto vs quantize_static, dynamic vs quantize_dynamic).",
        "",
        *bars.markdown(rows, variants),
        "",
        *bars.truth_markdown(rows, variants),
        "Share of float weight bytes feeding matmul-like ops (decides the size bar): "
        + ", ".join(f"{r['name']} {r['heavy_share']:.2f}" for r in rows),
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "wild_models.md", "\n".join(md))
    doc = {**doc, "summary": {v: bars.summary(rows, v) for v in variants}}
    _atomic_write(out / "wild_models.json", json.dumps(doc, indent=2) + "\n")


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return sha or "unknown commit"


def _names(text: str | None, known: list[str], what: str) -> list[str]:
    if not text:
        return known
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; expected some of {','.join(known)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(sources.DEFAULT_CACHE), help="the corpus cache")
    parser.add_argument("--models", help="comma-separated model names (default: all)")
    parser.add_argument("--variants", help=f"comma-separated, from {','.join(bars.VARIANTS)}")
    parser.add_argument("--timeout", type=float, default=1200, help="s per quantize command")
    parser.add_argument("--budget", type=float, default=8.0, help="s of timing per model")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    try:
        names = _names(args.models, [m.name for m in CORPUS], "model")
        variants = _names(args.variants, list(bars.VARIANTS), "variant")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = Path(args.cache)
    files = ("{}.onnx", "{}_calib.npz", "{}_eval.npz")
    entries = [m for m in CORPUS if m.name in names]
    ready = [m for m in entries if all((cache / f.format(m.name)).exists() for f in files)]
    for m in entries:
        if m not in ready:
            print(f"skip {m.name}: not prepared in {cache} (run wild_models/prepare.py)")
    if not ready:
        print(f"error: no prepared model in {cache}; run benchmarks/wild_models/prepare.py first "
              "or pass --cache DIR", file=sys.stderr)  # fmt: skip
        return 2
    import onnxruntime

    from quanta.runtime import describe_machine

    missing = [m.name for m in CORPUS if m not in ready]
    partial = []
    if missing:
        partial.append(f"{len(ready)} of {len(CORPUS)} models (not run: {', '.join(missing)})")
    if len(variants) < len(bars.VARIANTS):
        partial.append(f"variants {', '.join(variants)} only")
    given = sys.argv[1:] if argv is None else argv
    doc: dict[str, Any] = {
        "partial": "; ".join(partial),
        "machine": f"{describe_machine()}, Python {platform.python_version()}",
        "onnxruntime": onnxruntime.__version__,
        "commit": _commit(),
        "command": " ".join(["python benchmarks/wild_models.py", *given]),
        "date": time.strftime("%Y-%m-%d"),
        "variants": variants,
        "models": [],
    }  # fmt: skip
    for entry in ready:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"wild-{entry.name}-") as tmp:
            try:
                row = measure_model(entry, cache, Path(tmp), variants, args.timeout, args.budget)
            except Exception as exc:  # noqa: BLE001  (one model's failure never stops the run)
                message = f"measuring failed: {_one_line(exc)}"
                row = {
                    "name": entry.name, "metric": entry.metric, "heavy_share": 0.0,
                    "variants": {v: {"status": "error", "message": message} for v in variants},
                }  # fmt: skip
        doc["models"].append(row)
        done = f"{len(doc['models'])} of {len(ready)} models done"
        write_results(Path(args.out), {**doc, "partial": "; ".join([*partial, done])}
                      if len(doc["models"]) < len(ready) else doc)  # fmt: skip
        print(f"{entry.name}: {time.perf_counter() - t0:.0f} s ({done})", file=sys.stderr)
    print("\n".join(bars.markdown(doc["models"], variants)[: 2 + len(variants)]))
    print(f"wrote {Path(args.out) / 'wild_models.md'} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
