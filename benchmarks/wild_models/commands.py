"""Every quanta command on every corpus model, first try (issue 14's acceptance).

    python benchmarks/wild_models/commands.py [--cache DIR] [--models a,b] [--out DIR]

Per model, as a new user would, default flags: ``quantize --calibration NAME_calib.npz``, then on
the int8 file ``bench`` (against the float model, on the evaluation set, batch 1), ``verify``,
``inspect`` (against the float model) and ``export-tflite``. Each command's outcome is
``ok`` (exit 0), ``refused`` (exit 2 with one ``quanta: error:`` line: allowed, it names what
the command cannot do) or ``crash`` (any other exit, an internal error or a traceback). A
``.tflite`` that export-tflite wrote must also run: LiteRT runs it on ``LITERT_SAMPLES``
evaluation samples (batch 1, in a child process) beside ONNX Runtime on the int8 ONNX file; the
export is ``wrong`` where LiteRT cannot run it or its outputs' cosine to ONNX Runtime's is
below ``LITERT_COSINE``. Writes ``wild_commands.md`` and ``.json`` to ``--out`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import sources  # noqa: E402
from corpus import CORPUS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def commands(model: Path, calib: Path, ev: Path, int8: Path, tflite: Path) -> dict[str, list[str]]:
    """The five commands, quantize first (the others read what it wrote)."""
    return {
        "quantize": ["quantize", str(model), "-o", str(int8), "--calibration", str(calib)],
        "bench": ["bench", str(int8), "--data", str(ev), "--batch", "1", "--reference", str(model)],
        "verify": ["verify", str(int8), "--inputs", str(ev), "--samples", "8"],
        "inspect": ["inspect", str(int8), "--reference", str(model), "--calibration", str(calib),
                    "--samples", "8", "--sensitivity-samples", "4", "--runs", "5"],
        "export-tflite": ["export-tflite", str(int8), "-o", str(tflite),
                          "--calibration", str(calib)],
    }  # fmt: skip


LITERT_SAMPLES = 8
# LiteRT's int8 kernels round as ONNX Runtime's do but for ties, and its hybrid (dynamic-range)
# kernels quantize inputs per run as ONNX Runtime's dynamic ones: a file that computes the same
# model agrees far above this; a wrong layout or padding falls far below it
LITERT_COSINE = 0.99


def litert_cosine(tflite: Path, onnx_path: Path, ev: Path) -> float:
    """The lowest, over the outputs, cosine between LiteRT running ``tflite`` and ONNX Runtime
    running ``onnx_path`` on the first evaluation samples, one at a time. A 4-D input the
    .tflite takes channels last (export-tflite's NHWC) is transposed for it."""
    import numpy as np
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    from quanta.runtime import run_model as ort_run

    data = np.load(ev)
    feeds = {k: data[k][:LITERT_SAMPLES] for k in data.files}
    want = ort_run(onnx.load(str(onnx_path)), feeds)
    names = [o.name for o in onnx.load(str(onnx_path)).graph.output]
    it = Interpreter(model_path=str(tflite), num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    got: dict[str, list[np.ndarray]] = {o["name"]: [] for o in outs}
    for i in range(len(next(iter(feeds.values())))):
        for d in ins:
            x = feeds[d["name"]][i : i + 1] if d["name"] in feeds else next(iter(feeds.values()))
            if x.ndim == 4 and list(x.shape) != list(d["shape"]):
                x = x.transpose(0, 2, 3, 1)
            it.set_tensor(d["index"], x.astype(d["dtype"]))
        it.invoke()
        for o in outs:
            got[o["name"]].append(it.get_tensor(o["index"]).copy())
    cosines = []
    for k, name in enumerate(names):
        mine = got.get(name) or list(got.values())[k]
        a = np.concatenate(mine).astype(np.float64).ravel()
        b = np.asarray(want[k], np.float64).ravel()
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0)))
    return min(cosines)


def check_tflite(tflite: Path, onnx_path: Path, ev: Path, timeout: float) -> tuple[str, str]:
    """("ok" | "wrong", why) for a .tflite export-tflite wrote, in a child process (a file
    LiteRT cannot run may abort its process)."""
    argv = [sys.executable, __file__, "--litert", str(tflite), str(onnx_path), str(ev)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "wrong", f"LiteRT did not finish in {timeout:.0f} s"
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("cosine ")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return "wrong", f"LiteRT cannot run it: {last}"
    cosine = float(lines[-1].split()[1])
    if cosine < LITERT_COSINE:
        return "wrong", f"LiteRT's outputs are off ONNX Runtime's: cosine {cosine:.4f}"
    return "ok", f"LiteRT vs ONNX Runtime cosine {cosine:.4f} ({LITERT_SAMPLES} samples)"


def outcome(rc: int, text: str) -> tuple[str, str]:
    """("ok" | "refused" | "crash", the line that says why)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if rc == 0 and "Traceback" not in text and "internal error" not in text:
        return "ok", ""
    if rc == 2 and last.startswith("quanta: error:") and "Traceback" not in text:
        return "refused", last
    why = next((line for line in lines if "internal error" in line or "Error" in line), last)
    return "crash", f"exit {rc}: {why}"


def run_model(name: str, cache: Path, work: Path, timeout: float) -> dict[str, Any]:
    model, calib, ev = (cache / f"{name}{s}" for s in (".onnx", "_calib.npz", "_eval.npz"))
    int8, tflite = work / f"{name}_int8.onnx", work / f"{name}.tflite"
    row: dict[str, Any] = {"name": name, "commands": {}}
    for command, argv in commands(model, calib, ev, int8, tflite).items():
        if command != "quantize" and not int8.exists():
            row["commands"][command] = {"status": "not run", "why": "quantize wrote nothing"}
            continue
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "quanta", *argv], capture_output=True, text=True,
                timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
            status, why = outcome(proc.returncode, proc.stdout + proc.stderr)
            why = why.replace(f"{work}{os.sep}", "")  # the temporary folder says nothing
        except subprocess.TimeoutExpired:
            status, why = "crash", f"did not finish in {timeout:.0f} s"
        if command == "export-tflite" and status == "ok":
            status, why = check_tflite(tflite, int8, ev, timeout)
        row["commands"][command] = {
            "status": status, "why": why[:300], "seconds": round(time.perf_counter() - t0, 1)
        }  # fmt: skip
    if int8.exists():
        row["size_ratio"] = round(model.stat().st_size / int8.stat().st_size, 2)
    return row


def markdown(doc: dict[str, Any]) -> str:
    names = list(commands(*(Path("x"),) * 5))
    rows = doc["models"]
    counts = {c: sum(r["commands"].get(c, {}).get("status") == "ok" for r in rows) for c in names}
    crashes = [
        f"{r['name']} {c}: {v['why']}"
        for r in rows for c, v in r["commands"].items() if v["status"] in ("crash", "wrong")
    ]  # fmt: skip
    out = [
        "# Every command on every wild model (issue 14)",
        "",
        f"Machine: {doc['machine']}; quanta at {doc['commit']}. Command: `{doc['command']}`. "
        f"Date: {doc['date']}.",
        "",
        "Default flags, first try: `quantize --calibration NAME_calib.npz`, then on its file "
        "`bench --data NAME_eval.npz --batch 1 --reference NAME.onnx`, `verify --samples 8`, "
        "`inspect --reference NAME.onnx` and `export-tflite`. ok: exit 0; refused: exit 2 with "
        "one `quanta: error:` line (allowed: it names what the command cannot do); crash: any "
        "other exit, an internal error or a traceback. An exported .tflite must run in LiteRT "
        f"beside ONNX Runtime on the int8 ONNX file ({LITERT_SAMPLES} evaluation samples, "
        f"batch 1): wrong where it cannot or its outputs' cosine is below {LITERT_COSINE}.",
        "",
        f"Models: {len(rows)}. ok per command: "
        + ", ".join(f"{c} {counts[c]}/{len(rows)}" for c in names)
        + f". Crashes or wrong exports: {len(crashes)}.",
        "",
        "| model | size ratio | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        cells = []
        for c in names:
            v = r["commands"].get(c, {"status": "-"})
            cells.append(v["status"] + (f" ({v['seconds']:.0f} s)" if "seconds" in v else ""))
        ratio = f"{r['size_ratio']:.2f}x" if "size_ratio" in r else "-"
        out.append(f"| {r['name']} | {ratio} | " + " | ".join(cells) + " |")
    refusals = [
        f"- {r['name']} {c}: {v['why']}"
        for r in rows for c, v in r["commands"].items() if v["status"] == "refused"
    ]  # fmt: skip
    if refusals:
        out += ["", "Refusals:", "", *refusals]
    exports = [
        f"- {r['name']}: {v['why']}"
        for r in rows
        if (v := r["commands"].get("export-tflite", {})).get("status") == "ok" and v.get("why")
    ]
    if exports:
        out += ["", "Exports run in LiteRT:", "", *exports]
    if crashes:
        out += ["", "Crashes and wrong exports:", "", *(f"- {c}" for c in crashes)]
    return "\n".join(out) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(sources.DEFAULT_CACHE), help="the corpus cache")
    parser.add_argument("--models", help="comma-separated model names (default: all)")
    parser.add_argument("--timeout", type=float, default=1200, help="s per command")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    known = [m.name for m in CORPUS]
    names = args.models.split(",") if args.models else known
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; expected some of {', '.join(known)}")
    cache = Path(args.cache)
    if not all((cache / f"{n}.onnx").exists() for n in names):
        parser.error(f"corpus not prepared in {cache}; run benchmarks/wild_models/prepare.py")
    from quanta.runtime import describe_machine

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    given = sys.argv[1:] if argv is None else argv
    doc: dict[str, Any] = {
        "machine": describe_machine(), "commit": commit or "unknown",
        "command": " ".join(["python benchmarks/wild_models/commands.py", *given]),
        "date": time.strftime("%Y-%m-%d"), "models": [],
    }  # fmt: skip
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"cmds-{name}-") as tmp:
            row = run_model(name, cache, Path(tmp), args.timeout)
        doc["models"].append(row)
        summary = ", ".join(f"{c} {v['status']}" for c, v in row["commands"].items())
        print(f"{name}: {summary}", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "wild_commands.json", json.dumps(doc, indent=1) + "\n")
    _atomic_write(out / "wild_commands.md", markdown(doc))
    crashed = any(
        v["status"] in ("crash", "wrong") for r in doc["models"] for v in r["commands"].values()
    )
    print(markdown(doc).split("\n\n")[3])
    return 1 if crashed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--litert"]:  # the child process of check_tflite
        print(f"cosine {litert_cosine(*(Path(a) for a in sys.argv[2:5])):.6f}")
        raise SystemExit(0)
    raise SystemExit(main())
