"""The same float LeNet, made full-integer TFLite by quanta and by TensorFlow's own converter;
both run in LiteRT in one run: size, accuracy on the MNIST test set, batch-1 latency (1 thread).

    python benchmarks/tflite_vs_tf.py --tf-python /path/to/python-with-tensorflow
                                      [--lenet FLOAT.onnx] [--out benchmarks/results]

TensorFlow is never a dependency of quanta: it runs in the Python given by --tf-python
(``pip install tensorflow-cpu`` in a separate virtual environment), through
``benchmarks/tflite/tf_convert_lenet.py``. Both converters get the same 500 calibration digits
(quanta's calibration split, seed 0) as representative data. Without --lenet, LeNet is trained
with ``quanta train``'s defaults first (~1 min). Writes ``tflite_vs_tf.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from quanta.cli import main as quanta_main
from quanta.cli.train import checkpoint_path
from quanta.data import calibration_split, load_mnist
from quanta.graph import CalibrationData, QuantizeConfig, load_model, quantize_static
from quanta.runtime import EvalSet, bench_models, describe_machine, make_session
from quanta.tflite import onnx_to_tflite

HELPER = Path(__file__).parent / "tflite" / "tf_convert_lenet.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", required=True, help="a Python that can import tensorflow")
    parser.add_argument("--lenet", help="float LeNet ONNX with its .pt beside (default: train)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_mnist()
    calib = calibration_split(ds.train, 500, seed=0).images
    with tempfile.TemporaryDirectory(prefix="quanta-tflite-") as tmp:
        work = Path(tmp)
        lenet = Path(args.lenet) if args.lenet else work / "lenet.onnx"
        if not args.lenet and quanta_main(["train", "-o", str(lenet)]) != 0:
            return 1
        state = torch.load(checkpoint_path(lenet), map_location="cpu", weights_only=True)
        np.savez(work / "weights.npz", **{k: v.numpy() for k, v in state.items()})
        np.savez(work / "calib.npz", images=calib)

        # quanta: static int8 with its defaults, then its own TFLite writer
        static = quantize_static(load_model(lenet), CalibrationData({"image": calib}),
                                 QuantizeConfig()).model  # fmt: skip
        logits = make_session(static.SerializeToString()).run(None, {"image": calib})[0]
        ours = work / "quanta.tflite"
        ours.write_bytes(
            onnx_to_tflite(static, {"logits": (float(logits.min()), float(logits.max()))})
        )

        theirs = work / "tensorflow.tflite"
        done = subprocess.run(
            [args.tf_python, str(HELPER), str(work / "weights.npz"), str(work / "calib.npz"),
             str(theirs)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            print(f"TensorFlow's conversion failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        data = EvalSet({"image": ds.test.images}, ds.test.labels, ds.source)
        results = bench_models(
            [ours, theirs], data, batches=(1,), threads=1, names=["quanta", "TensorFlow"],
            budget_s=8.0,
        )  # fmt: skip
    q, t = results
    size_ratio = q.size_bytes / t.size_bytes
    latency_ratio = q.latency[1].p50_ms / t.latency[1].p50_ms
    machine = describe_machine()
    lines = [
        "# LeNet full-integer TFLite: quanta's writer vs TensorFlow's converter, both in LiteRT",
        "",
        f"Machine: {machine}. Command: `python benchmarks/tflite_vs_tf.py --tf-python ...`. "
        "Same float weights, same 500 calibration digits; MNIST test set (10,000 images); "
        "latency at batch 1, 1 thread, interleaved.",
        "",
        "| converter | size | accuracy | batch 1 ms p50 (p90) | ops |",
        "|---|---|---|---|---|",
        *(
            f"| {r.name} | {r.size_bytes:,} B | {100 * (r.accuracy or 0):.2f} % | "
            f"{r.latency[1].p50_ms:.3f} ({r.latency[1].p90_ms:.3f}) | "
            f"{', '.join(f'{k}×{v}' for k, v in sorted(r.kernels.all.items()))} |"
            for r in results
        ),
        "",
        f"- quanta / TensorFlow: size **{size_ratio:.3f}**, batch-1 latency "
        f"**{latency_ratio:.3f}** (target: both ≤ 1.05).",
        "",
    ]
    doc = {"machine": machine, "results": [r.as_dict() for r in results],
           "size_ratio": size_ratio, "latency_ratio": latency_ratio}  # fmt: skip
    (out_dir / "tflite_vs_tf.md").write_text("\n".join(lines))
    (out_dir / "tflite_vs_tf.json").write_text(json.dumps(doc, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
