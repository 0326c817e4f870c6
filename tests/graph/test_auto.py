"""``--mode auto``: every candidate judged against the target, the fastest that meets it kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_graphs import make_model, rand

from quanta.cli import main
from quanta.errors import InputError
from quanta.graph import CalibrationData, QuantizeConfig, auto
from quanta.graph.auto import AutoTarget, quantize_auto
from quanta.graph.result import FloatKind
from quanta.graph.static import quantize_static
from quanta.runtime import mean_cosine, run_model

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def _auto(model: onnx.ModelProto, images: np.ndarray, target: AutoTarget, **kw: object):  # type: ignore[no-untyped-def]
    return quantize_auto(
        model, CalibrationData({"image": images[:64]}), {"image": images[64:]}, target,
        config=QuantizeConfig(method="minmax"), latency_budget_s=0.05, **kw,
    )  # fmt: skip


def test_auto_returns_the_fastest_candidate_meeting_the_target(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model, images = make_convnet(), make_images(160)
    result = _auto(model, images, AutoTarget(min_fidelity=0.99))
    names = [c.name for c in result.candidates]
    assert names[0] == "float" and "static (all int8)" in names and "dynamic" in names
    feasible = [c for c in result.candidates if c.meets]
    if any(c.name == "weight-only" for c in feasible):  # same kernels as float, fewer bytes
        feasible = [c for c in feasible if c.name != "float"]
    chosen = next(c for c in result.candidates if c.name == result.chosen)
    assert chosen.meets and chosen.latency_ms == min(c.latency_ms for c in feasible)
    assert result.model is chosen.model
    # each score is what it claims: recompute the chosen one independently
    reference = run_model(model, {"image": images[64:]})
    got = mean_cosine(run_model(result.model, {"image": images[64:]}), reference)
    assert got == pytest.approx(chosen.score, abs=1e-9) and got >= 0.99
    assert any(note.startswith("target: mean output cosine") for note in result.notes)


def test_weight_only_is_chosen_over_the_float_model_it_matches(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The float model timed faster than weight-only storage (noise: ONNX Runtime runs the same
    kernels once it folds the decoders): weight-only, a quarter of the bytes, is still chosen."""
    model, images = make_convnet(), make_images(160)

    def float_wins(candidates, *_):  # type: ignore[no-untyped-def]
        for c in candidates:
            c.latency_ms = 1.0 if c.name == "float" else 1.001 if c.name == "weight-only" else 9.0

    monkeypatch.setattr(auto, "_measure_latency", float_wins)
    result = _auto(model, images, AutoTarget(min_fidelity=0.99))
    assert result.chosen == "weight-only"
    assert result.model.ByteSize() < model.ByteSize()


def test_unreachable_target_falls_back_to_float(
    make_convnet: MakeConvnet, make_images: MakeImages
) -> None:
    model = make_convnet()
    result = _auto(model, make_images(160), AutoTarget(min_fidelity=1.0))
    assert result.chosen == "float"
    assert result.model is model
    assert all(not c.meets for c in result.candidates if c.name != "float")


def test_accuracy_target_uses_labels(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    model, images = make_convnet(), make_images(160)
    labels = run_model(model, {"image": images[64:]})[0].argmax(axis=1)  # float is 100 % here
    result = _auto(model, images, AutoTarget(max_accuracy_drop=5.0), labels=labels)
    assert result.measure == "top-1 accuracy" and result.target == pytest.approx(0.95)
    by = {c.name: c for c in result.candidates}
    assert by["float"].score == 1.0
    with pytest.raises(InputError, match="labels"):
        _auto(model, images, AutoTarget(max_accuracy_drop=1.0))


@pytest.mark.parametrize(
    "kwargs", [{}, {"max_accuracy_drop": 1.0, "min_fidelity": 0.9}, {"min_fidelity": 1.5}]
)
def test_target_must_be_exactly_one_valid_value(kwargs: dict[str, float]) -> None:
    with pytest.raises(InputError):
        AutoTarget(**kwargs)


def test_cli_auto(make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    model_path, calib, ev, out = (tmp_path / n for n in ("m.onnx", "c.npz", "e.npz", "a.onnx"))
    model = make_convnet()
    onnx.save_model(model, model_path)
    images = make_images(100)
    np.savez(calib, image=images[:50])
    np.savez(ev, image=images[50:])
    code = main(["quantize", str(model_path), "-o", str(out), "--mode", "auto",
                 "--calibration", str(calib), "--eval", str(ev)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "chose" in captured.err
    # the default target in words, never a dataclass repr
    assert (
        "no target given: requiring a mean output cosine to float of at least 0.99 "
        "(see --max-accuracy-drop / --min-fidelity)" in captured.err
    )
    assert "AutoTarget(" not in captured.err and "None" not in captured.err
    assert out.exists() and "auto (" in captured.out


def test_auto_target_in_words() -> None:
    from quanta.cli.quantize import _describe

    assert _describe(AutoTarget(max_accuracy_drop=0.5)) == "allowing a 0.5 pp top-1 accuracy drop"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--mode", "auto", "--calibration", "C"], "needs --eval"),
        (["--mode", "static", "--calibration", "C", "--eval", "C"], "only used with --mode auto"),
    ],
)
def test_cli_auto_flag_errors(
    make_convnet: MakeConvnet, make_images: MakeImages, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str,
) -> None:  # fmt: skip
    model_path, calib, out = tmp_path / "m.onnx", tmp_path / "c.npz", tmp_path / "a.onnx"
    onnx.save_model(make_convnet(), model_path)
    np.savez(calib, image=make_images(8))
    argv = [
        "quantize",
        str(model_path),
        "-o",
        str(out),
        *[str(calib) if a == "C" else a for a in extra],
    ]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def concat_reshape_concat() -> onnx.ModelProto:
    """ddddocr_det's shape: a Concat of mismatched ranges (kept float) whose Reshape reader is kept
    float with it, and a second Concat that reads that Reshape and stays int8.

    x -> conv_a (wide) a, conv_b (narrow) b, conv_c (wide) c; Concat(a, b) -> Reshape r;
    Concat(r, c) -> conv_out -> y."""
    w = rand(2, 2, 1, 1, seed=0)
    return make_model(
        [
            helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", kernel_shape=[1, 1]),
            helper.make_node("Conv", ["x", "wb"], ["b"], name="conv_b", kernel_shape=[1, 1]),
            helper.make_node("Conv", ["x", "wc"], ["c"], name="conv_c", kernel_shape=[1, 1]),
            helper.make_node("Concat", ["a", "b"], ["cat"], name="concat", axis=1),
            helper.make_node("Reshape", ["cat", "shape"], ["r"], name="reshape"),
            helper.make_node("Concat", ["r", "c"], ["cat2"], name="concat2", axis=1),
            helper.make_node("Conv", ["cat2", "w3"], ["y"], name="conv_out", kernel_shape=[3, 3]),
        ],
        {"x": ["N", 2, 6, 6]},
        {"y": ["N", 4, 4, 4]},
        {"wa": w * 100.0, "wb": w, "wc": w * 100.0, "w3": rand(4, 6, 3, 3, seed=1),
         "shape": np.array([0, 4, 6, 6], dtype=np.int64)},
    )  # fmt: skip


def test_concat_kept_float_after_calibration_does_not_lose_a_range() -> None:
    """Regression (ddddocr_det in --mode auto: ``KeyError: '874'``): with no fidelity search and
    no latency check, calibration observed only the first plan's tensors; keeping the mismatched
    Concat and its Reshape reader float then gave the Reshape's output its own grid (it had
    shared its input's), a range nobody had observed."""
    model = concat_reshape_concat()
    x = rand(96, 2, 6, 6, seed=5, std=1.0)
    config = QuantizeConfig(method="minmax", min_fidelity=None, latency_check=False)
    result = quantize_static(model, CalibrationData({"x": x[:64]}), config)
    kinds = {f.name: f.kind for f in result.float_nodes}
    assert kinds == {"concat": FloatKind.RANGES, "reshape": FloatKind.RANGES}
    # the float Reshape's output is quantized on its own grid for concat2, from its own range
    quantized = {n.input[0] for n in result.model.graph.node if n.op_type == "QuantizeLinear"}
    assert "r_pre" in quantized
    # ONNX Runtime runs it and it stays close to float (independent oracle: the float model)
    reference = run_model(model, {"x": x[64:]})
    assert mean_cosine(run_model(result.model, {"x": x[64:]}), reference) > 0.99
    # and --mode auto, which calibrates the same way, completes
    auto = quantize_auto(
        model, CalibrationData({"x": x[:64]}), {"x": x[64:]}, AutoTarget(min_fidelity=0.9),
        config=QuantizeConfig(method="minmax"), latency_budget_s=0.02,
    )  # fmt: skip
    assert auto.chosen in {c.name for c in auto.candidates}
