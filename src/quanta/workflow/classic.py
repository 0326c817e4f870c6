"""The classic TensorFlow MNIST workflow, framework-neutral, in one call.

Train the float LeNet; make the fp16, dynamic, static, qat and qat_uint8 variants; run every one
in ONNX Runtime on the MNIST test set; write the report (Markdown, JSON, PNG) and every model.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch

from quanta._io import write_bytes_atomic, write_text_atomic
from quanta.data import Dataset, Split, calibration_split, load_mnist
from quanta.graph import CalibrationData, QuantizeConfig, load_model, quantize_static, save_model
from quanta.graph.dynamic import quantize_dynamic
from quanta.graph.fp16 import quantize_fp16
from quanta.models import LeNet, TrainConfig, evaluate, export_onnx, save_checkpoint, train
from quanta.qat import QATConfig, export_qat_onnx, prepare_qat, train_qat
from quanta.report.explain import explain
from quanta.report.plot import tradeoff_png
from quanta.report.table import bench_markdown
from quanta.runtime import BenchResult, EvalSet, bench_models, describe_machine, make_session
from quanta.tflite import onnx_to_tflite

__all__ = [
    "ClassicConfig", "ClassicResult", "TFLITE_VARIANTS", "VARIANTS", "output_files",
    "run_classic", "tflite_available",
]  # fmt: skip

VARIANTS = ("float", "fp16", "dynamic", "static", "qat", "qat_uint8")
# written by quanta export-tflite and run in LiteRT, when LiteRT is installed
TFLITE_VARIANTS = ("static_tflite", "qat_uint8_tflite")


def tflite_available() -> bool:
    """Whether LiteRT (``pip install 'quanta[litert]'``) is installed to run .tflite files."""
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


@dataclass(frozen=True)
class ClassicConfig:
    epochs: int = 8
    qat_epochs: int = 1
    quant_delay: int = 20
    calibration_samples: int = 500
    threads: int = 1
    seed: int = 0
    data_dir: str | None = None
    latency_budget_s: float = 2.0


@dataclass
class ClassicResult:
    results: list[BenchResult]
    explanations: list[str]
    machine: str
    dataset: dict[str, object]
    wall_time_s: float
    steps_s: dict[str, float] = field(default_factory=dict)


Step = Callable[[str, int, int], None]


def output_files(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Every file ``run_classic`` writes into ``out_dir``."""
    out = Path(out_dir)
    return [
        *(out / f"lenet_{name}.onnx" for name in VARIANTS),
        *(out / f"lenet_{name.removesuffix('_tflite')}.tflite" for name in TFLITE_VARIANTS),
        out / "lenet_float.pt",
        out / "report.json",
        out / "report.md",
        out / "tradeoff.png",
    ]


def run_classic(
    out_dir: str | os.PathLike[str], config: ClassicConfig, on_progress: Step | None = None
) -> ClassicResult:
    """Run the whole workflow into ``out_dir`` (created if missing); return the measurements."""
    start = time.perf_counter()
    steps: dict[str, float] = {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = _Progress(on_progress)
    paths = {name: out / f"lenet_{name}.onnx" for name in VARIANTS}

    with _timed(steps, "train"):
        ds = load_mnist(config.data_dir)
        net, float_proto = _train_float(ds, config, paths, report)
    with _timed(steps, "ptq"):
        calib = _post_training(float_proto, ds, config, paths, report)
    with _timed(steps, "qat"):
        qat_torch_acc = _quantization_aware(net, ds, config, paths, report)
    variants = list(VARIANTS)
    if tflite_available():
        with _timed(steps, "tflite"):
            variants += _tflite(out, calib, paths, report)
    with _timed(steps, "bench"):
        data = EvalSet({"image": ds.test.images}, ds.test.labels, ds.source)
        results = bench_models(
            [paths[v] for v in variants], data, threads=config.threads, names=variants,
            budget_s=config.latency_budget_s, on_step=lambda msg: report(f"benchmark: {msg}"),
        )  # fmt: skip
    for r in results:
        r.path = os.path.relpath(r.path, out)
    machine = describe_machine()
    notes = {
        "qat": "The QAT model's own fake-quant forward pass in PyTorch scores "
        f"{100 * qat_torch_acc:.2f} %.",
    }
    by_name = {r.name: r for r in results}
    explanations = explain(by_name, machine, notes)
    dataset = {"train": len(ds.train), "test": len(ds.test), "source": ds.source}
    result = ClassicResult(results, explanations, machine, dataset, 0.0, steps)
    result.wall_time_s = time.perf_counter() - start
    write_reports(out, result, config)
    return result


@dataclass(frozen=True)
class _Progress:
    """``on_progress`` with ``done`` and ``total`` optional, and nothing to do when it is None."""

    on_progress: Step | None

    def __call__(self, what: str, done: int = 0, total: int = 0) -> None:
        if self.on_progress:
            self.on_progress(what, done, total)


@contextmanager
def _timed(steps: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of the ``with`` block as ``steps[name]`` (seconds)."""
    t = time.perf_counter()
    yield
    steps[name] = time.perf_counter() - t


def _train_float(
    ds: Dataset, config: ClassicConfig, paths: dict[str, Path], report: _Progress
) -> tuple[LeNet, onnx.ModelProto]:
    """Train the float LeNet; write it as ONNX and as a PyTorch checkpoint."""
    torch.manual_seed(config.seed)
    net = LeNet()
    train(
        net, ds.train.images, ds.train.labels, TrainConfig(epochs=config.epochs, seed=config.seed),
        on_step=lambda s, n, loss: report("training float LeNet", s, n),
    )  # fmt: skip
    example = torch.zeros(1, 1, 28, 28)
    float_proto = export_onnx(net, paths["float"], example)
    save_checkpoint(net, paths["float"].with_suffix(".pt"))
    return net, float_proto


def _post_training(
    float_proto: onnx.ModelProto,
    ds: Dataset,
    config: ClassicConfig,
    paths: dict[str, Path],
    report: _Progress,
) -> Split:
    """Write the fp16, dynamic and static variants; return the static model's calibration set."""
    report("post-training quantization")
    save_model(quantize_fp16(float_proto).model, paths["fp16"])
    save_model(quantize_dynamic(float_proto).model, paths["dynamic"])
    calib = calibration_split(ds.train, config.calibration_samples, seed=config.seed)
    static = quantize_static(
        float_proto, CalibrationData({"image": calib.images}), QuantizeConfig(),
        on_batch=lambda d, n: report("calibrating static int8", d, n),
    )  # fmt: skip
    save_model(static.model, paths["static"])
    return calib


def _quantization_aware(
    net: LeNet, ds: Dataset, config: ClassicConfig, paths: dict[str, Path], report: _Progress
) -> float:
    """Fine-tune a QAT copy of ``net``; write the qat and qat_uint8 variants; return the
    accuracy of the fake-quant model in PyTorch."""
    torch.manual_seed(config.seed)
    qat = prepare_qat(net, QATConfig(quant_delay=config.quant_delay))
    train_qat(
        qat, ds.train.images, ds.train.labels,
        TrainConfig(epochs=config.qat_epochs, learning_rate=1e-4, seed=config.seed),
        quant_delay=config.quant_delay, on_step=lambda s, n, loss: report("QAT fine-tuning", s, n),
    )  # fmt: skip
    sample = torch.from_numpy(ds.train.images[:64])
    export_qat_onnx(qat, paths["qat"], sample)
    export_qat_onnx(qat, paths["qat_uint8"], sample, uint8_input=True)
    return evaluate(qat, ds.test.images, ds.test.labels)


def _tflite(out: Path, calib: Split, paths: dict[str, Path], report: _Progress) -> list[str]:
    """Write the TFLite variants (their paths go into ``paths``); return their names."""
    report("TFLite export")
    # quanta's static model writes float logits; TFLite holds them in int8 on the range
    # they take over the calibration digits
    logits = make_session(paths["static"]).run(None, {"image": calib.images})[0]
    ranges = {"logits": (float(logits.min()), float(logits.max()))}
    for name in TFLITE_VARIANTS:
        source = name.removesuffix("_tflite")
        paths[name] = out / f"lenet_{source}.tflite"
        write_bytes_atomic(paths[name], onnx_to_tflite(load_model(paths[source]), ranges))
    return list(TFLITE_VARIANTS)


def write_reports(out: Path, result: ClassicResult, config: ClassicConfig) -> None:
    doc = {
        "dataset": result.dataset,
        "variants": [
            {
                "name": r.name,
                "path": r.path,
                "size_bytes": r.size_bytes,
                "accuracy": r.accuracy,
                "latency_ms_b1_p50": round(r.latency[1].p50_ms, 4),
                "latency_ms_b256_p50": round(r.latency[256].p50_ms, 4),
                "latency_ms_b1_p90": round(r.latency[1].p90_ms, 4),
                "latency_ms_b256_p90": round(r.latency[256].p90_ms, 4),
                "int8_ops": dict(sorted(r.kernels.int8.items())),
                "ops": dict(sorted(r.kernels.all.items())),
            }
            for r in result.results
        ],
        "threads": config.threads,
        "machine": result.machine,
        "wall_time_s": round(result.wall_time_s, 2),
        "steps_s": {k: round(v, 2) for k, v in result.steps_s.items()},
        "explanations": result.explanations,
    }
    write_text_atomic(out / "report.json", json.dumps(doc, indent=2) + "\n")
    md = [
        "# quanta: the classic MNIST workflow",
        "",
        f"Data: train {result.dataset['train']:,}, test {result.dataset['test']:,} images "
        f"({result.dataset['source']}). Machine: {result.machine}. "
        f"{config.threads} thread(s); latency is the median (p90) of interleaved runs.",
        "",
        bench_markdown(result.results),
        "## What the numbers say",
        "",
        *[f"- {line}" for line in result.explanations],
        "",
        f"Wall time: {result.wall_time_s:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in result.steps_s.items())
        + ").",
        "",
        "![size vs accuracy](tradeoff.png)",
        "",
    ]
    write_text_atomic(out / "report.md", "\n".join(md))
    tradeoff_png(
        result.results,
        out / "tradeoff.png",
        f"LeNet on MNIST: size vs accuracy ({result.machine.split(',')[0]})",
    )
