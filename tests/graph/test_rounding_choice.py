"""``weight_rounding="auto"``: GPTQ only where nearest rounding misses the fidelity target and
GPTQ comes closer; the model is then byte for byte ``weight_rounding="gptq"``'s."""

from __future__ import annotations

import numpy as np
import onnx
from test_rounding import _correlated_gemm

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.result import QuantizeResult
from quanta.runtime import mean_cosine, run_model


def _quantize(
    model: onnx.ModelProto, calib: np.ndarray, rounding: str, target: float
) -> QuantizeResult:
    config = QuantizeConfig(
        weight_rounding=rounding,  # type: ignore[arg-type]
        min_fidelity=target,
        max_float=0,  # judge the rounding alone: no node may be kept float
        latency_check=False,
        method="minmax",
        activation_type="int8",
    )
    return quantize_static(model, CalibrationData({"x": calib}), config)


def test_missed_target_takes_gptq_which_is_closer_in_onnx_runtime() -> None:
    model, calib, held = _correlated_gemm()
    (want,) = run_model(model, {"x": held})
    auto = _quantize(model, calib, "auto", 0.999999)  # nearest rounding misses this
    gptq = _quantize(model, calib, "gptq", 0.999999)
    nearest = _quantize(model, calib, "nearest", 0.999999)
    assert auto.model.SerializeToString() == gptq.model.SerializeToString()
    assert auto.model.SerializeToString() != nearest.model.SerializeToString()
    assert any("GPTQ on 2 weight(s)" in note and "missed" in note for note in auto.notes)
    # on samples neither calibration nor the choice saw, GPTQ's outputs are closer to float's
    cos = {
        name: mean_cosine(run_model(r.model, {"x": held}), [want])
        for name, r in (("auto", auto), ("nearest", nearest))
    }
    assert cos["auto"] > cos["nearest"], cos


def test_met_target_keeps_nearest_rounding() -> None:
    model, calib, _ = _correlated_gemm()
    auto = _quantize(model, calib, "auto", 0.5)  # nearest rounding meets this
    nearest = _quantize(model, calib, "nearest", 0.5)
    assert auto.model.SerializeToString() == nearest.model.SerializeToString()
    assert not any("GPTQ" in note for note in auto.notes)
