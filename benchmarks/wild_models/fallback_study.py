"""What the accuracy-aware fallback could reach on a corpus model: one calibration, many choices
of nodes kept float, each scored by the model's task metric on its evaluation set.

    python benchmarks/wild_models/fallback_study.py NAME [--cache DIR]

Runs ``quanta.quantize`` with default flags up to the fallback search, and takes the builds it
would search with (the same calibration, range method and activation type). Then builds, and
scores against the float model on NAME_eval.npz (ONNX Runtime, CPU, one sample at a time):

- every computing node int8 (the search's starting point);
- the first k candidates in graph order kept float (the front of the network), and every
  candidate float; the weights of the nodes kept float stored int8 (as quanta stores them
  today) or float16;
- every candidate float but the last (a classifier head), weights of the float ones float16.

Beside each: the file's size ratio to float, and on sequence outputs (``quanta.graph.measures``)
the counted per-position arg-max agreement and the expected one
(``quanta.runtime.expected_agreement``), pooled over the evaluation set.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
import sources  # noqa: E402
from corpus import CORPUS  # noqa: E402
from prepare import run_per_sample  # noqa: E402

import quanta  # noqa: E402
import quanta.graph.static as static  # noqa: E402
from quanta.graph.measures import class_sequence_outputs  # noqa: E402
from quanta.runtime.expected_agreement import expected_argmax_agreement  # noqa: E402
from quanta.runtime.fidelity import argmax_agreement  # noqa: E402

FRONTS = (13, 20, 30, 40)  # candidates kept float from the front


class _Captured(Exception):
    """Stops ``quanta.quantize`` where the fallback search would start."""


def default_builds(model: Path, calib: Path) -> Any:
    """The builds a default ``quanta.quantize`` run would hand its fallback search."""
    captured: dict[str, Any] = {}

    def capture(builds: Any, *args: object, **kwargs: object) -> None:
        captured["builds"] = builds
        raise _Captured

    search, static.keep_costly_float = static.keep_costly_float, capture  # type: ignore[assignment]
    try:
        quanta.quantize(str(model), str(calib), latency_check=False)
    except _Captured:
        pass
    finally:
        static.keep_costly_float = search
    return captured["builds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[e.name for e in CORPUS])
    parser.add_argument("--cache", default=str(sources.DEFAULT_CACHE))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    entry = next(e for e in CORPUS if e.name == args.name)
    path = cache / f"{entry.name}.onnx"
    with np.load(cache / f"{entry.name}_eval.npz") as e:
        ev = dict(e)
    score = entry.scorer(cache, path)
    ref = run_per_sample(path, ev)
    float_bytes = path.stat().st_size
    builds = default_builds(path, cache / f"{entry.name}_calib.npz")
    plans = builds.calibration.plan.plans
    order = [
        n.name for n in builds.prepared.graph.node
        if n.name in plans and plans[n.name].output != "shared"
    ]  # fmt: skip
    weights = {
        n.name: n.input[1]
        for n in builds.prepared.graph.node
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
    }
    pooled = [np.concatenate([np.asarray(r[k]) for r in ref]) for k in range(len(ref[0]))]
    sequences = class_sequence_outputs(builds.prepared, pooled)
    samples = len(next(iter(ev.values())))
    print(
        f"{entry.name}: {len(order)} candidates, method {builds.method}, "
        f"{builds.activation_type} activations, {samples} evaluation samples"
    )
    print(
        f"\n| nodes kept float | their weights | {entry.metric} | size ratio "
        "| counted agreement | expected agreement |"
    )
    print("|---|---|---|---|---|---|")

    def row(label: str, keep: Mapping[str, str], half: bool) -> None:
        builds.fp16_weights = frozenset(weights[n] for n in keep if n in weights and half)
        model = builds.model(dict(keep))
        with _saved(model) as file:
            out = run_per_sample(file, ev)
        counted = expected = "-"
        if sequences:
            o = [np.concatenate([np.asarray(x[k]) for x in out]) for k in sequences]
            r = [pooled[k] for k in sequences]
            counted = f"{argmax_agreement(o, r):.5f}"
            expected = f"{expected_argmax_agreement(o, r):.5f}"
        storage = "-" if not keep else "float16" if half else "int8"
        print(
            f"| {label} | {storage} | {score(ref, out):.4f} | "
            f"{float_bytes / model.ByteSize():.2f}x | {counted} | {expected} |",
            flush=True,
        )

    row("none (every computing node int8)", {}, False)
    for half in (False, True):
        for k in [*(f for f in FRONTS if f < len(order)), len(order)]:
            row(f"first {k} in graph order", {n: "" for n in order[:k]}, half)
    row(f"all but the last ({order[-1]})", {n: "" for n in order[:-1]}, True)
    return 0


class _saved:
    """``model`` in a temporary .onnx file (ONNX Runtime reads it by path)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        self.path = Path(self._dir.name) / "m.onnx"
        onnx.save(model, self.path)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
