"""method="auto" and activation_type="auto": defaults, the notes that name the choice, and the
observers each explicit method uses; invalid values are InputErrors that name the flag."""

from __future__ import annotations

import platform
import re
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.errors import InputError
from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.graph.static import AUTO_METHODS, observer_factory
from quanta.quant import HistogramObserver, MinMaxObserver

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def test_defaults_are_auto() -> None:
    config = QuantizeConfig()
    assert config.method == "auto"
    assert config.activation_type == "auto"
    assert config.min_fidelity == 0.997


def test_auto_notes_name_the_chosen_method_and_activation_type(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    result = quantize_static(make_convnet(), CalibrationData({"image": make_images(32)}))
    notes = result.notes
    # First note: what was calibrated, with the settled choices; a quarter of 32 samples held
    # out for fidelity.
    chosen = re.fullmatch(
        r"calibrated on 24 samples, fidelity on 8 held out; \d+ activation tensors calibrated "
        r"\((\w+), (\w+) activations\)",
        notes[0],
    )
    assert chosen is not None, notes[0]
    method, activation_type = chosen.groups()
    assert method in AUTO_METHODS and activation_type in ("int8", "uint8")
    (method_note,) = [n for n in notes if n.startswith("method ")]
    assert method_note.startswith(
        f"method {method} chosen by output fidelity on 8 held-out calibration samples"
    )
    for m in AUTO_METHODS:  # every candidate is scored
        assert re.search(rf"\b{m} [01]\.\d{{4}}\b", method_note), (m, method_note)
    (type_note,) = [n for n in notes if " activations: ONNX Runtime leaves " in n]
    assert type_note.startswith(f"{activation_type} activations:")


def test_auto_method_picks_the_best_scored(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    config = QuantizeConfig(activation_type="int8", min_fidelity=None)
    result = quantize_static(make_convnet(), CalibrationData({"image": make_images(32)}), config)
    (note,) = [n for n in result.notes if n.startswith("method ")]
    scores = {m: float(v) for m, v in re.findall(r"(\w+) (\d\.\d{4})", note)}
    assert set(scores) == set(AUTO_METHODS)
    chosen = note.split()[1]
    assert scores[chosen] == max(scores.values())
    # no activation-type note when the type is given
    assert not any(" activations: ONNX Runtime leaves " in n for n in result.notes)
    assert "(" + chosen + ", int8 activations)" in result.notes[0]


def test_explicit_method_and_type_skip_the_search(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    config = QuantizeConfig(method="percentile", activation_type="uint8", min_fidelity=None)
    result = quantize_static(make_convnet(), CalibrationData({"image": make_images(32)}), config)
    assert "(percentile, uint8 activations)" in result.notes[0]
    assert not any(n.startswith("method ") for n in result.notes)
    zero_points = [t for t in result.model.graph.initializer if t.data_type == TensorProto.UINT8]
    assert zero_points  # uint8 activations: uint8 zero points


@pytest.mark.parametrize(
    ("method", "observer", "histogram_method"),
    [
        ("minmax", MinMaxObserver, None),
        ("percentile", HistogramObserver, "percentile"),
        ("entropy", HistogramObserver, "entropy"),
        ("mse", HistogramObserver, "mse"),
        # auto scores every method: it needs the histogram, and starts from min-max
        ("auto", HistogramObserver, "minmax"),
    ],
)
def test_observer_per_method(method: str, observer: type, histogram_method: str | None) -> None:
    obs = observer_factory(QuantizeConfig(method=method))()  # type: ignore[arg-type]
    assert type(obs) is observer
    if histogram_method is not None:
        assert obs.method == histogram_method  # type: ignore[attr-defined]


def test_percentile_reaches_the_histogram_observer() -> None:
    obs = observer_factory(QuantizeConfig(method="percentile", percentile=99.5))()
    assert isinstance(obs, HistogramObserver)
    assert obs.percentile == 99.5  # type: ignore[attr-defined]


def test_auto_activation_type_prefers_uint8_when_ort_fuses_more() -> None:
    # x is read by two Convs: with int8 activations ONNX Runtime leaves them float on x86,
    # with uint8 it fuses all three Convs and the Add.
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0.0, 0.5, (4, 2, 1, 1)),
        "w2": rng.normal(0.0, 0.5, (4, 2, 1, 1)),
        "w3": rng.normal(0.0, 0.5, (3, 4, 3, 3)),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_a", kernel_shape=[1, 1]),
            helper.make_node("Conv", ["x", "w2"], ["b"], name="conv_b", kernel_shape=[1, 1]),
            helper.make_node("Add", ["a", "b"], ["s"], name="add"),
            helper.make_node("Conv", ["s", "w3"], ["y"], name="conv_out", kernel_shape=[3, 3]),
        ],
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    x = rng.normal(0.0, 1.0, (16, 2, 6, 6)).astype(np.float32)
    config = QuantizeConfig(method="minmax", min_fidelity=None)
    result = quantize_static(model, CalibrationData({"x": x}), config)
    (note,) = [n for n in result.notes if " activations: ONNX Runtime leaves " in n]
    found = re.fullmatch(
        r"(\w+) activations: ONNX Runtime leaves (\d+) compute op\(s\) float with \1, "
        r"(\d+) with (\w+)",
        note,
    )
    assert found is not None, note
    best, left_best, left_other, other = found.groups()
    assert {best, other} == {"int8", "uint8"}
    # uint8 only when it leaves strictly fewer ops float; a tie keeps int8
    assert (
        int(left_best) < int(left_other) if best == "uint8" else int(left_best) <= int(left_other)
    )
    assert f"(minmax, {best} activations)" in result.notes[0]
    if platform.machine().lower() in ("x86_64", "amd64"):
        # NOTE: ONNX Runtime's x86 QDQ fusion of a tensor read by several int8 nodes
        assert note == (
            "uint8 activations: ONNX Runtime leaves 0 compute op(s) float with uint8, 2 with int8"
        )


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"method": "max"}, "--method"),
        ({"method": "AUTO"}, "--method"),
        ({"activation_type": "int4"}, "--activation-type"),
        ({"min_fidelity": 0.0}, "--min-fidelity"),
        ({"min_fidelity": -0.5}, "--min-fidelity"),
        ({"min_fidelity": 1.5}, "--min-fidelity"),
        ({"percentile": 50.0}, "--percentile"),
        ({"holdout_samples": 0}, "holdout"),
    ],
)
def test_invalid_values_raise_input_error(options: dict[str, object], flag: str) -> None:
    with pytest.raises(InputError, match=re.escape(flag)):
        QuantizeConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("min_fidelity", [None, 1.0, 1e-6])
def test_boundary_min_fidelity_is_accepted(min_fidelity: float | None) -> None:
    assert QuantizeConfig(min_fidelity=min_fidelity).min_fidelity == min_fidelity
