"""AVX2-without-VNNI emulation: u8 x s8 pair sums saturate in int16; 7-bit weights never do."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from quanta.graph import CalibrationData, QuantizeConfig, quantize_static
from quanta.ref import run_reference, verify
from quanta.ref.saturation import pairwise_saturating_matmul

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def test_pair_sums_clip_at_int16_by_hand() -> None:
    a = np.array([[255, 255, 255, 1, 7]], np.int64)  # K = 5: padded to 6
    b = np.array([[127], [127], [-128], [-128], [3]], np.int64)
    # pairs: 255*127 + 255*127 = 64,770 -> 32,767; 255*-128 + 1*-128 = -32,768 (fits); 7*3 = 21
    assert pairwise_saturating_matmul(a, b).tolist() == [[32767 - 32768 + 21]]
    exact = int((a @ b).item())
    assert exact == 64770 - 32768 + 21


def test_without_saturation_it_is_the_exact_product() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (33, 64))
    b = rng.integers(-64, 65, (64, 9))  # 2 x 255 x 64 = 32,640 <= 32,767
    np.testing.assert_array_equal(pairwise_saturating_matmul(a, b), a @ b)


def _model(
    make_convnet: MakeConvnet, make_images: MakeImages, weight_range: str
) -> onnx.ModelProto:
    config = QuantizeConfig(min_fidelity=None, method="minmax", weight_range=weight_range,  # type: ignore[arg-type]
                            activation_type="uint8")  # fmt: skip
    # bright images and large weights: the pair sums of a full-range conv reach past 32,767
    model = make_convnet(channels=8)
    for init in model.graph.initializer:
        if init.name == "conv.weight":
            w = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(np.abs(w) + 0.5, init.name))
    images = 0.5 + 0.5 * make_images(64)
    return quantize_static(model, CalibrationData({"image": images}), config).model


def test_full_range_weights_saturate_and_reduced_do_not(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    feeds = {"image": 0.5 + 0.5 * make_images(8, seed=4)}
    full = run_reference(_model(make_convnet, make_images, "full"), feeds, emulate_avx2=True)
    assert full.saturated["conv"][0] > 0
    reduced = run_reference(_model(make_convnet, make_images, "reduced"), feeds, emulate_avx2=True)
    assert all(s == 0 for s, _ in reduced.saturated.values())
    exact = run_reference(_model(make_convnet, make_images, "reduced"), feeds)
    np.testing.assert_array_equal(reduced.outputs["logits"], exact.outputs["logits"])


def test_verify_reports_the_saturation(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    model = _model(make_convnet, make_images, "full")
    report = verify(model, {"image": 0.5 + 0.5 * make_images(8, seed=4)}, emulate_avx2=True)
    doc = report.as_dict()
    assert doc["avx2_saturation"]["conv"]["saturated"] > 0  # type: ignore[index]
    assert "logits" in doc["avx2_effect_on_outputs"]  # type: ignore[operator]
