"""Every quanta command on every corpus model, first try (issue 14's acceptance).

    python benchmarks/wild_models/commands.py [--cache DIR] [--models a,b] [--out DIR]

Per model, as a new user would, default flags: ``quantize --calibration NAME_calib.npz``, then on
the int8 file ``bench`` (against the float model, on the evaluation set, batch 1), ``verify``,
``inspect`` (against the float model) and ``export-tflite``. Each command's outcome is
``ok`` (exit 0), ``refused`` (exit 2 with one ``quanta: error:`` line: allowed, it names what
the command cannot do) or ``crash`` (any other exit, an internal error or a traceback). Writes
``wild_commands.md`` and ``.json`` to ``--out`` (default ``benchmarks/results``).
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
        for r in rows for c, v in r["commands"].items() if v["status"] == "crash"
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
        "other exit, an internal error or a traceback.",
        "",
        f"Models: {len(rows)}. ok per command: "
        + ", ".join(f"{c} {counts[c]}/{len(rows)}" for c in names)
        + f". Crashes: {len(crashes)}.",
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
    if crashes:
        out += ["", "Crashes:", "", *(f"- {c}" for c in crashes)]
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
    crashed = any(v["status"] == "crash" for r in doc["models"] for v in r["commands"].values())
    print(markdown(doc).split("\n\n")[3])
    return 1 if crashed else 0


if __name__ == "__main__":
    raise SystemExit(main())
