"""--weight-range: 7-bit weights where int8 dot products saturate in int16 pair sums."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.compact import expand_qdq
from quanta.graph.dynamic import quantize_dynamic
from quanta.runtime.machine import int8_pairs_saturate

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def _int8_weights(model: onnx.ModelProto) -> list[np.ndarray]:
    consts = {t.name: numpy_helper.to_array(t) for t in expand_qdq(model).graph.initializer}
    return [v for v in consts.values() if v.dtype == np.int8 and v.ndim >= 2]


@pytest.mark.parametrize(("weight_range", "bound"), [("full", 127), ("reduced", 64)])
def test_static_weight_range(
    make_convnet: MakeConvnet, make_images: MakeImages, weight_range: str, bound: int
) -> None:
    config = QuantizeConfig(weight_range=weight_range, min_fidelity=None, method="minmax")  # type: ignore[arg-type]
    model = quantize_static(make_convnet(), CalibrationData({"image": make_images(32)}), config)
    weights = _int8_weights(model.model)
    assert weights and all(np.abs(w).max() == bound for w in weights)
    if weight_range == "reduced":
        assert any("7 bits" in note for note in model.notes)


def test_dynamic_reduced_weights(make_convnet: MakeConvnet) -> None:
    result = quantize_dynamic(
        make_convnet(), QuantizeConfig(mode="dynamic", weight_range="reduced")
    )
    consts = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    matmul_weights = [  # the int8 weight MatMulInteger reads (compact names it briefly)
        consts[n.input[1]] for n in result.model.graph.node if n.op_type == "MatMulInteger"
    ]
    assert matmul_weights and all(np.abs(w).max() <= 64 for w in matmul_weights)


def test_auto_follows_the_cpu(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert int8_pairs_saturate({"avx2", "fma"}) and not int8_pairs_saturate({"avx2", "avx_vnni"})
    assert not int8_pairs_saturate({"neon", "asimd"})
    monkeypatch.setattr("quanta.graph.static.int8_pairs_saturate", lambda: True)
    config = QuantizeConfig(min_fidelity=None, method="minmax")
    model = quantize_static(make_convnet(), CalibrationData({"image": make_images(32)}), config)
    assert all(np.abs(w).max() == 64 for w in _int8_weights(model.model))
    assert any("no VNNI" in note for note in model.notes)


def test_weight_range_must_be_known() -> None:
    from quanta.errors import InputError

    with pytest.raises(InputError, match="weight-range"):
        QuantizeConfig(weight_range="6bit")  # type: ignore[arg-type]
