"""Which ops to run in dynamic int8 on this CPU: quanta's choice vs ONNX Runtime's default.

ONNX Runtime's ``quantize_dynamic`` turns Conv into ConvInteger and MatMul/Gemm into
MatMulInteger. quanta runs only Gemm/MatMul in int8 (DynamicQuantizeMatMul) and keeps Conv in
float with int8-stored weights. This script measures the three on the same float LeNet:

    python benchmarks/dynamic_ops.py [--model lenet.onnx] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic
from rich.console import Console

from quanta.cli import main as quanta_main
from quanta.data import load_mnist
from quanta.report import bench_markdown, bench_table
from quanta.runtime import EvalSet, bench_models, describe_machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="float LeNet ONNX (default: train one now)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_mnist()
    with tempfile.TemporaryDirectory(prefix="quanta-dyn-") as tmp:
        work = Path(tmp)
        float_path = Path(args.model) if args.model else work / "lenet.onnx"
        if not args.model and quanta_main(["train", "-o", str(float_path)]) != 0:
            return 1
        ours = work / "quanta_dynamic.onnx"
        if quanta_main(["quantize", str(float_path), "-o", str(ours), "--mode", "dynamic"]) != 0:
            return 1
        ort_path = work / "ort_dynamic.onnx"
        quantize_dynamic(str(float_path), str(ort_path), weight_type=QuantType.QInt8)
        data = EvalSet({"image": ds.test.images}, ds.test.labels, "MNIST t10k (bundled)")
        results = bench_models(
            [float_path, ort_path, ours], data, batches=(1, 256), threads=1,
            names=["float", "onnxruntime dynamic (default)", "quanta dynamic"], budget_s=4.0,
        )  # fmt: skip
    machine = describe_machine()
    Console(width=160).print(bench_table(results, title=f"dynamic int8 on LeNet; {machine}"))
    md = [
        "# Dynamic-range int8: which ops to run in int8 (LeNet, MNIST)",
        "",
        f"Machine: {machine}. One thread; median (p90) of interleaved runs.",
        f"Command: `python benchmarks/dynamic_ops.py`. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        bench_markdown(results),
    ]
    (out_dir / "dynamic_ops.md").write_text("\n".join(md))
    doc = {"machine": machine, "models": [r.as_dict() for r in results]}
    (out_dir / "dynamic_ops.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out_dir / 'dynamic_ops.md'} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
