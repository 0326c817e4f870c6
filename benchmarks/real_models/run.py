"""quanta vs ONNX Runtime's quantizer on two real third-party models, same inputs, same runtime.

    python benchmarks/real_models/run.py [--cache DIR] [--out benchmarks/results]

MobileNetV2 (torchvision ImageNet weights) static int8, and all-MiniLM-L6-v2 dynamic and static
int8, each beside ONNX Runtime's own quantizer (``quantize_static`` QDQ per-channel MinMax after
``quant_pre_process``; ``quantize_dynamic`` default and per-channel). Fidelity is measured
against the float model on the evaluation set (photos and modules never used for
calibration); latency at batch 1 on 1 thread, timed interleaved with the float model.
Writes ``real_models.md`` and ``real_models.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).parent))
from prepare import DEFAULT_CACHE, prepare_minilm, prepare_mobilenet  # noqa: E402

from quanta.graph import CalibrationData, QuantizeConfig, load_model, save_model  # noqa: E402
from quanta.graph import quantize_static as quanta_static  # noqa: E402
from quanta.graph.dynamic import quantize_dynamic as quanta_dynamic  # noqa: E402
from quanta.runtime import (  # noqa: E402
    count_kernels,
    describe_machine,
    fidelity,
    interleaved_latency,
    make_session,
    predict,
)


class _Reader(CalibrationDataReader):
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(next(iter(arrays.values())))
        self._it = iter([{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)])

    def get_next(self):  # type: ignore[no-untyped-def]
        return next(self._it, None)


def _ort_static(model: Path, calib: dict[str, np.ndarray], out: Path) -> float:
    t0 = time.perf_counter()
    pre = out.with_name(out.stem + "_pre.onnx")
    quant_pre_process(str(model), str(pre))
    quantize_static(
        str(pre),
        str(out),
        _Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return time.perf_counter() - t0


def _measure(
    name: str,
    path: Path,
    float_path: Path,
    ev: dict[str, np.ndarray],
    ref: np.ndarray,
    seconds: float | None,
    notes: list[str],
    classifier: bool,
) -> dict[str, object]:
    session = make_session(path)
    out = predict(session, ev, batch_size=32)
    fid = fidelity(out, ref, classifier=classifier).as_dict()
    one = {k: v[:1] for k, v in ev.items()}
    lat_float, lat = interleaved_latency([make_session(float_path), session], one, 1, budget_s=6.0)
    kernels = count_kernels(path)
    return {
        "name": name,
        "size_bytes": path.stat().st_size,
        "size_ratio": float_path.stat().st_size / path.stat().st_size,
        "fidelity": fid,
        "latency_ms_b1_p50": lat.p50_ms,
        "float_latency_ms_b1_p50": lat_float.p50_ms,
        "speedup_b1": lat_float.p50_ms / lat.p50_ms,
        "int8_ops": dict(sorted(kernels.int8.items())),
        "float_compute_ops": {
            k: v
            for k, v in sorted(kernels.all.items())
            if k not in kernels.int8
            and k
            in (
                "Conv",
                "FusedConv",
                "MatMul",
                "Gemm",
                "FusedGemm",
                "Add",
                "FusedMatMul",
                "QuantizeLinear",
                "DequantizeLinear",
            )
        },
        "quantize_seconds": seconds,
        "notes": notes,
    }


def _quanta_static(model: Path, calib: dict[str, np.ndarray], out: Path) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    result = quanta_static(load_model(model), CalibrationData(calib), QuantizeConfig())
    save_model(result.model, out)
    kept = [str(f) for f in result.float_nodes if "quantizing it alone cost" in f.reason]
    return time.perf_counter() - t0, [*result.notes, *kept]


def bench_mobilenet(cache: Path, work: Path) -> list[dict[str, object]]:
    paths = prepare_mobilenet(cache)
    calib, ev = dict(np.load(paths["calib"])), dict(np.load(paths["eval"]))
    ref = predict(make_session(paths["model"]), ev, batch_size=32)
    rows = [_measure("float", paths["model"], paths["model"], ev, ref, None, [], True)]
    ort_path = work / "mobilenet_ort_static.onnx"
    s = _ort_static(paths["model"], calib, ort_path)
    rows.append(
        _measure(
            "onnxruntime static (QDQ, per-channel, MinMax)",
            ort_path,
            paths["model"],
            ev,
            ref,
            s,
            [],
            True,
        )
    )
    ours = work / "mobilenet_quanta_static.onnx"
    s, notes = _quanta_static(paths["model"], calib, ours)
    rows.append(_measure("quanta static (defaults)", ours, paths["model"], ev, ref, s, notes, True))
    return rows


def bench_minilm(cache: Path, work: Path) -> list[dict[str, object]]:
    paths = prepare_minilm(cache)
    calib, ev = dict(np.load(paths["calib"])), dict(np.load(paths["eval"]))
    ref = predict(make_session(paths["model"]), ev, batch_size=32)
    rows = [_measure("float", paths["model"], paths["model"], ev, ref, None, [], False)]
    for per_channel in (False, True):
        p = work / f"minilm_ort_dynamic_{per_channel}.onnx"
        t0 = time.perf_counter()
        quantize_dynamic(
            str(paths["model"]), str(p), weight_type=QuantType.QInt8, per_channel=per_channel
        )
        label = "per-channel" if per_channel else "default"
        rows.append(
            _measure(
                f"onnxruntime dynamic ({label})",
                p,
                paths["model"],
                ev,
                ref,
                time.perf_counter() - t0,
                [],
                False,
            )
        )
    p = work / "minilm_quanta_dynamic.onnx"
    t0 = time.perf_counter()
    result = quanta_dynamic(load_model(paths["model"]))
    save_model(result.model, p)
    rows.append(
        _measure(
            "quanta dynamic",
            p,
            paths["model"],
            ev,
            ref,
            time.perf_counter() - t0,
            result.notes,
            False,
        )
    )
    p = work / "minilm_ort_static.onnx"
    s = _ort_static(paths["model"], calib, p)
    rows.append(
        _measure(
            "onnxruntime static (QDQ, per-channel, MinMax)",
            p,
            paths["model"],
            ev,
            ref,
            s,
            [],
            False,
        )
    )
    p = work / "minilm_quanta_static.onnx"
    s, notes = _quanta_static(paths["model"], calib, p)
    rows.append(_measure("quanta static (defaults)", p, paths["model"], ev, ref, s, notes, False))
    return rows


def _md_table(rows: list[dict[str, object]], classifier: bool) -> list[str]:
    head = ["variant", "size", "smaller"]
    head += ["top-1 agree", "top-1 agree (confident)"] if classifier else []
    head += ["cosine mean", "cosine min", "b1 ms", "speed-up", "quantize s", "int8 kernels"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        f = r["fidelity"]
        assert isinstance(f, dict)
        cells = [str(r["name"]), f"{r['size_bytes'] / 1e6:.2f} MB", f"{r['size_ratio']:.2f}×"]
        if classifier:
            cells += [
                f"{100 * f['top1_agreement']:.1f} %",
                f"{100 * f['top1_agreement_confident']:.1f} % of {f['confident_samples']}",
            ]
        q = r["quantize_seconds"]
        ops = ", ".join(f"{k}×{v}" for k, v in r["int8_ops"].items()) or "none"  # type: ignore[attr-defined]
        cells += [
            f"{f['cosine_mean']:.4f}",
            f"{f['cosine_min']:.4f}",
            f"{r['latency_ms_b1_p50']:.2f}",
            f"{r['speedup_b1']:.2f}×",
            "—" if q is None else f"{q:.1f}",
            ops,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "results"))
    args = parser.parse_args(argv)
    cache, out = Path(args.cache), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="quanta-real-") as tmp:
        mobilenet = bench_mobilenet(cache, Path(tmp))
        minilm = bench_minilm(cache, Path(tmp))
    md = [
        "# Real third-party models: quanta vs ONNX Runtime's quantizer",
        "",
        f"Machine: {machine}. Latency: batch 1, 1 thread, median of runs interleaved with the "
        "float model. Fidelity: against the float model on the evaluation set (MobileNetV2: "
        "224x224 crops of photos never used for calibration; MiniLM: 128-token sentences from "
        "standard-library modules never used for calibration).",
        f"Command: `python benchmarks/real_models/run.py`. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "## MobileNetV2 (torchvision ImageNet weights), static int8",
        "",
        *_md_table(mobilenet, True),
        "",
        "## all-MiniLM-L6-v2 (sentence-transformers), dynamic and static int8",
        "",
        *_md_table(minilm, False),
        "",
        "## What quanta decided, and why (its own notes)",
        "",
    ]
    for model, rows in (("MobileNetV2", mobilenet), ("MiniLM", minilm)):
        for r in rows:
            for note in r["notes"]:  # type: ignore[attr-defined]
                md.append(f"- {model}, {r['name']}: {note}")
    (out / "real_models.md").write_text("\n".join(md) + "\n")
    doc = {"machine": machine, "mobilenetv2": mobilenet, "minilm": minilm}
    (out / "real_models.json").write_text(json.dumps(doc, indent=2) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
