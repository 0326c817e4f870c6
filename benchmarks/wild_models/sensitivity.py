"""Where a corpus model's answers go: each weight group alone int8, and the float model's own
noise floor.

    python benchmarks/wild_models/sensitivity.py NAME [--cache DIR] [--split eval]

Two tables, scored by the model's own task metric against the float model on NAME_SPLIT.npz
(ONNX Runtime, CPU, one sample at a time):

1. Each weight group stored int8 alone, every other weight and every activation float:
   the weights of all Convs, of all Gemm/MatMuls, an LSTM/GRU's ``W``, its ``R``, both, and
   every group together. Symmetric int8, nearest rounding, one scale per output row (as quanta
   stores them), and for the matrices also one scale per block of 64 and of 32 input values per
   row. No bias correction, which quanta applies to Conv/Gemm: a first convolution whose 3x3
   kernels nearly cancel on flat backgrounds reads much worse here than in quanta's model.
2. The float model on its float inputs plus seeded normal noise, in input units (on images
   scaled to [0, 1], one 8-bit pixel step is 1/255 = 0.0039): how far a perturbation below the
   input's own resolution moves the answers, so that a quantized model's score can be read
   against it. Integer inputs (token ids, bytes) get no noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
import sources  # noqa: E402
from corpus import CORPUS  # noqa: E402
from prepare import run_per_sample  # noqa: E402

NOISE = (5e-4, 1e-3, 2e-3)  # standard deviations, in input units
DRAWS = 2
BLOCKS = (0, 64, 32)  # 0: one scale per row


def int8_rows(rows: np.ndarray, block: int) -> np.ndarray:
    """``rows`` ``(R, K)`` rounded to symmetric int8 and back, one scale per row or per
    ``block`` values of a row (``K`` divisible by it), ``q`` in ``[-127, 127]``, half to even."""
    r, k = rows.shape
    groups = rows.reshape(r, k // block, block) if block else rows.reshape(r, 1, k)  # (R, G, B)
    scale = np.abs(groups).max(axis=-1, keepdims=True) / 127
    scale[scale == 0] = 1.0
    return (np.clip(np.rint(groups / scale), -127, 127) * scale).reshape(r, k)


def weight_groups(model: onnx.ModelProto) -> dict[str, set[str]]:
    """Initializer names of each weight group, by the op type that reads them."""
    inits = {i.name for i in model.graph.initializer}
    groups: dict[str, set[str]] = {}
    for node in model.graph.node:
        slots = {"Conv": {"Conv": 1}, "Gemm": {"Gemm/MatMul": 1}, "MatMul": {"Gemm/MatMul": 1}}
        slots |= {op: {f"{op} W": 1, f"{op} R": 2} for op in ("LSTM", "GRU")}
        for group, k in slots.get(node.op_type, {}).items():
            if len(node.input) > k and node.input[k] in inits:
                groups.setdefault(group, set()).add(node.input[k])
    recurrent = {n for g, names in groups.items() if g[-2:] in (" W", " R") for n in names}
    if recurrent:
        groups["LSTM/GRU W+R"] = recurrent
    groups["all"] = set().union(*groups.values()) if groups else set()
    return groups


def with_int8(model: onnx.ModelProto, names: Iterable[str], block: int) -> onnx.ModelProto | None:
    """``model`` with the initializers ``names`` rounded by ``int8_rows``; None when a block
    does not divide a row."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    chosen = set(names)
    for init in out.graph.initializer:
        if init.name not in chosen:
            continue
        w = numpy_helper.to_array(init).astype(np.float32)
        # rows: a recurrent (D, G·H, in) weight per (direction, gate row); others per channel
        rows = w.reshape(-1, w.shape[-1]) if w.ndim == 3 else w.reshape(w.shape[0], -1)
        if block and rows.shape[1] % block:
            return None
        rounded = int8_rows(rows, block).reshape(w.shape).astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[e.name for e in CORPUS])
    parser.add_argument("--cache", default=str(sources.DEFAULT_CACHE))
    parser.add_argument("--split", default="eval", choices=("calib", "eval"))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    entry = next(e for e in CORPUS if e.name == args.name)
    path = cache / f"{entry.name}.onnx"
    with np.load(cache / f"{entry.name}_{args.split}.npz") as data:
        arrays = dict(data)
    reference = run_per_sample(path, arrays)
    scorer = entry.scorer(cache, path)
    model = onnx.load(str(path))

    def score(candidate: onnx.ModelProto, feeds: dict[str, np.ndarray] = arrays) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(candidate, Path(tmp) / "m.onnx")
            return scorer(reference, run_per_sample(Path(tmp) / "m.onnx", feeds))

    n = len(reference)
    print(f"{entry.name}: {entry.metric} against float on {n} {args.split} samples\n")
    print("| weights int8 alone | one scale per row | per 64 inputs | per 32 inputs |")
    print("|---|---|---|---|")
    for group, names in weight_groups(model).items():
        cells = [_cell(with_int8(model, names, block), score) for block in BLOCKS]
        print(f"| {group} ({len(names)}) | " + " | ".join(cells) + " |", flush=True)
    if not any(np.issubdtype(v.dtype, np.floating) for v in arrays.values()):
        return 0
    draws = " | ".join(f"draw {d}" for d in range(DRAWS))
    print(f"\n| float model, float inputs + N(0, sd) | {draws} |")
    print("|---|" + "---|" * DRAWS)
    rng = np.random.default_rng(0)
    for sd in NOISE:
        cells = []
        for _ in range(DRAWS):
            noisy = {k: _noisy(v, sd, rng) for k, v in arrays.items()}
            cells.append(f"{score(model, noisy):.4f}")
        print(f"| sd {sd:g} | " + " | ".join(cells) + " |", flush=True)
    return 0


def _noisy(v: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    if not np.issubdtype(v.dtype, np.floating):
        return v
    return (v + rng.normal(0, sd, v.shape)).astype(v.dtype)


def _cell(candidate: onnx.ModelProto | None, score: Callable[[onnx.ModelProto], float]) -> str:
    return "-" if candidate is None else f"{score(candidate):.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
