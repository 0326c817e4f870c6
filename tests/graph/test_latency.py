"""The latency check of static mode: which layers stay float for speed, with injected timers
(fixed figures: tests never assert on measured speed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from quanta.graph import CalibrationData, QuantizeConfig, latency, profile_names, quantize_static
from quanta.graph.auto import AutoTarget, quantize_auto
from quanta.graph.latency import Timer, slower_nodes
from quanta.graph.planner import plan_static
from quanta.graph.prepare import prepare
from quanta.graph.regions import int8_regions
from quanta.graph.result import FloatKind, FloatReason
from quanta.runtime import mean_cosine, run_model

MakeConvnet = Callable[..., onnx.ModelProto]
MakeImages = Callable[..., np.ndarray]


def count_q(model: onnx.ModelProto) -> int:
    return sum(n.op_type == "QuantizeLinear" for n in model.graph.node)


def _int32_bias(model: onnx.ModelProto, name: str) -> bool:
    """Whether node ``name`` reads its bias from a DequantizeLinear (an int32 bias)."""
    (node,) = [n for n in model.graph.node if n.name == name]
    producer = {o: n for n in model.graph.node for o in n.output}
    bias = producer.get(node.input[2]) if len(node.input) > 2 else None
    return bias is not None and bias.op_type == "DequantizeLinear"


def is_int8(model: onnx.ModelProto) -> bool:
    return count_q(model) > 0


class FixedTimer(Timer):
    """Every node takes 1 ms in float; in int8 the nodes of ``int8_ms`` take that, others
    0.5 ms. ``batch1`` answers the batch-1 timings, in call order; ``then`` answers a second
    batch-1 call (the variants timed when int8 is still slower than float) and ``again`` a
    third (float, int8, the fastest variant, timed once more); the models each call timed are
    kept in ``timed``."""

    def __init__(
        self,
        int8_ms: Mapping[str, float],
        batch1: Sequence[float],
        then: Sequence[float] = (),
        again: Sequence[float] = (),
    ) -> None:
        super().__init__()
        object.__setattr__(self, "int8_ms", dict(int8_ms))
        object.__setattr__(self, "answers", [list(batch1), list(then), list(again)])
        object.__setattr__(self, "calls", [])
        object.__setattr__(self, "timed", [])

    def node_times(self, model, feeds):  # type: ignore[no-untyped-def]
        self.calls.append("int8" if is_int8(model) else "float")
        if not is_int8(model):
            return {out: 1.0 for n in model.graph.node for out in n.output}
        return {
            n.name: self.int8_ms.get(n.name, 0.5)
            for n in model.graph.node
            if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        }

    def batch1_ms(self, models, feeds):  # type: ignore[no-untyped-def]
        self.timed.append(list(models))
        answer = self.answers[len(self.timed) - 1]
        assert len(answer) == len(models), f"timed {len(models)} models, {len(answer)} figures"
        return answer


def quantize(
    make_convnet: MakeConvnet, make_images: MakeImages, timer: Timer, monkeypatch, **config
):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(latency, "DEFAULT_TIMER", timer)
    data = CalibrationData({"image": make_images(64, hw=8)})
    cfg = QuantizeConfig(method="minmax", min_fidelity=None, **config)
    return quantize_static(make_convnet(), data, cfg)


def test_slower_nodes_margin_and_floor() -> None:
    float_ms = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 97.0}  # total 100 ms: floor 0.2 ms
    int8_ms = {"a": 1.5, "b": 1.09, "c": 1.15, "d": 50.0}
    # a: 1.5x slower; b: within the 1.10 margin; c: 1.15x but only 0.15 ms (< 0.2 ms floor)
    assert set(slower_nodes(float_ms, int8_ms)) == {"a"}
    assert slower_nodes(float_ms, int8_ms, candidates=["b", "c", "d"]) == {}
    reason = slower_nodes(float_ms, int8_ms)["a"]
    assert reason.kind is FloatKind.SPEED and "1.500 ms" in reason and "1.000 ms" in reason


def test_int8_time_includes_its_qdq(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    data = CalibrationData({"image": make_images(32, hw=8)})
    prepared = make_convnet()
    config = QuantizeConfig(min_fidelity=None, compact=False, latency_check=False)
    int8 = quantize_static(prepared, data, config).model
    aliases = profile_names.int8_aliases(int8, prepared)
    qdq = {n.name for n in int8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    # the input's Q/DQ go to the conv that reads it, the output's to its producer
    assert {"image_Q", "image_DQ", "conv.weight_DQ", "relu_out_Q"} <= aliases["conv"]
    assert {"pool_out_Q", "pool_out_DQ"} <= aliases["pool"]
    assert "fc.weight_DQ" in aliases["fc"]
    # every Q/DQ node is someone's, once
    owned = [a for names in aliases.values() for a in names if a in qdq]
    assert sorted(owned) == sorted(qdq)


def test_slower_layer_kept_float_when_the_rebuild_is_faster(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = FixedTimer({"fc": 3.0}, batch1=[2.0, 2.5, 1.5])  # float, int8, rebuilt
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    speed = [f for f in result.float_nodes if f.kind is FloatKind.SPEED]
    assert [f.name for f in speed] == ["fc"]
    # the rebuild is what is returned: fc has no int32 bias (it computes in float)
    all_int8 = quantize(make_convnet, make_images, timer, monkeypatch, latency_check=False)
    assert _int32_bias(all_int8.model, "fc")
    assert not _int32_bias(result.model, "fc")

    assert _int32_bias(result.model, "conv")
    assert result.notes[-1] == (
        "batch 1: 2.000 ms float, 1.500 ms int8 (1.33×), 1 layer(s) kept float for speed"
    )
    # float and int8 profiled in interleaved rounds (the latency_check=False build: none)
    assert timer.calls == ["float", "int8"] * 3


def test_rebuild_not_faster_keeps_every_layer_int8(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = FixedTimer({"fc": 3.0}, batch1=[2.0, 1.5, 1.40])  # rebuilt 7 % faster: < 10 %
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert not [f for f in result.float_nodes if f.kind is FloatKind.SPEED]
    assert result.notes[-1].startswith("batch 1: 2.000 ms float, 1.500 ms int8 (1.33×); ")
    assert "measured 1.400 ms, not faster: all kept int8" in result.notes[-1]


def test_still_slower_than_float_says_so_and_suggests_auto(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no layer slower, the whole model is; float compute with int8 weights is slower still,
    # beyond the band
    timer = FixedTimer({}, batch1=[1.0, 1.25], then=[1.0, 1.25, 1.28, 1.28])
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert is_int8(result.model)
    assert not [f for f in result.float_nodes if f.kind is FloatKind.SPEED]
    assert result.notes[-1] == (
        "slower than float here: batch 1: 1.000 ms float, 1.250 ms int8 (0.80×); also timed "
        "every layer float compute, weights stored int8: 1.280 ms (0.78×), every layer float "
        "compute, weights stored int8, 1 Gemm/MatMul dynamic int8: 1.280 ms (0.78×), none "
        "faster: all kept int8. --mode auto --eval EVAL.npz weighs float, dynamic and "
        "partly-float variants and keeps the fastest that meets an accuracy target"
    )
    # the one region covers every int8 layer, so it is not timed twice (as weight-only)
    assert [len(models) for models in timer.timed] == [2, 4]


def test_int8_slower_than_float_twice_takes_float_kernels_inside_the_band(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # int8 1 % slower than float; the weight-only variant (float's kernels once ONNX Runtime
    # folds its decoders) no faster than int8 beyond the 2 % band, but no slower: where int8 is
    # slower than float in both timings, it is taken
    timer = FixedTimer(
        {}, batch1=[1.0, 1.01], then=[1.0, 1.03, 1.02, 1.02], again=[1.0, 1.04, 1.01]
    )
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert not is_int8(result.model)
    assert {f.kind for f in result.float_nodes if f.name == "conv"} == {FloatKind.SPEED}
    assert "kept: every layer float compute, weights stored int8" in result.notes[-1]
    # the second timing has int8 faster than float beyond the band: nothing moves
    timer = FixedTimer({}, batch1=[1.0, 1.01], then=[1.0, 1.03, 1.02, 1.02], again=[1.0, 0.97, 1.0])
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert is_int8(result.model)
    assert "in a second timing, not faster: all kept int8" in result.notes[-1]


def test_int8_no_faster_than_float_beyond_the_band_takes_the_smaller_float_kernels(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # int8 1 % faster than float, inside the 2 % band: the weight-only variant, 1 % slower
    # than int8 and a smaller file, is as fast within the band in both timings: it is kept
    timer = FixedTimer({}, batch1=[1.0, 0.99], then=[1.0, 0.99, 1.0, 1.0], again=[1.0, 0.985, 1.0])
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert not is_int8(result.model)
    assert "kept: every layer float compute, weights stored int8" in result.notes[-1]
    assert not result.notes[-1].startswith("slower than float")
    # 3 % slower than int8 is beyond the band: int8 stays
    timer = FixedTimer({}, batch1=[1.0, 0.99], then=[1.0, 0.99, 1.02, 1.02])
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert is_int8(result.model)
    assert result.notes[-1].endswith("none faster: all kept int8")
    # int8 faster than float beyond the band: no variant is timed
    timer = FixedTimer({}, batch1=[1.0, 0.97])
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert is_int8(result.model) and len(timer.timed) == 1


def wide_convnet(make_convnet: MakeConvnet) -> onnx.ModelProto:
    """The convnet with an fc weight of 10 x 400 (stored int8 by weight_only)."""
    return make_convnet(hw=12, channels=16)


def test_slower_than_float_keeps_float_compute_with_int8_weights(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = FixedTimer({}, batch1=[1.0, 1.3], then=[1.0, 1.3, 0.98, 0.98], again=[1.0, 1.28, 0.99])
    monkeypatch.setattr(latency, "DEFAULT_TIMER", timer)
    model, x = wide_convnet(make_convnet), make_images(96, hw=12)
    result = quantize_static(model, CalibrationData({"image": x}), QuantizeConfig(method="minmax"))
    # float compute: no QuantizeLinear; the fc weight is stored int8 and decoded in float
    assert not is_int8(result.model)
    int8_inits = {i.name for i in result.model.graph.initializer if i.data_type == TensorProto.INT8}
    producer = {o: n for n in result.model.graph.node for o in n.output}
    (fc,) = [n for n in result.model.graph.node if n.name == "fc"]
    decode = producer[fc.input[1]]  # Cast(q) * scale
    assert decode.op_type == "Mul" and producer[decode.input[0]].op_type == "Cast"
    assert producer[decode.input[0]].input[0] in int8_inits
    assert result.model.ByteSize() < 0.5 * model.ByteSize()
    speed = {f.name: f.reason for f in result.float_nodes if f.kind is FloatKind.SPEED}
    assert set(speed) == {"conv", "pool", "flatten", "fc"}
    assert "every layer computes in float, with its weights stored int8" in speed["fc"]
    # the first note says what calibration measured, not what the kept build reads
    assert "; 2 activation tensors calibrated (minmax" in result.notes[0]
    assert result.notes[-1] == (
        "batch 1: 1.000 ms float, 1.300 ms int8 (0.77×); also timed every "
        "layer float compute, weights stored int8: 0.980 ms (1.02×), every layer float "
        "compute, weights stored int8, 1 Gemm/MatMul dynamic int8: 0.980 ms (1.02×); kept: "
        "every layer float compute, weights stored int8 (0.990 ms against 1.280 ms int8 in a "
        "second timing)"
    )
    # the fidelity report scores the model written (oracle: ONNX Runtime on the float model)
    assert result.fidelity is not None and result.fidelity.kept_float == 4
    got = mean_cosine(run_model(result.model, {"image": x}), run_model(model, {"image": x}))
    assert got > 0.9999 and result.fidelity.achieved > 0.9999


def test_slower_int8_region_kept_float(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pool kept float splits the int8 layers into two regions: conv(+relu) and fc; fc's region
    # takes 4 ms in int8 against 1 ms in float, conv's 0.5 against 2
    timer = FixedTimer(
        {"fc": 4.0},
        batch1=[1.0, 1.3, 1.25],
        then=[1.0, 1.3, 0.95, 1.0, 1.0],
        again=[1.0, 1.3, 0.96],
    )
    monkeypatch.setattr(latency, "DEFAULT_TIMER", timer)
    data = CalibrationData({"image": make_images(64, hw=8)})
    config = QuantizeConfig(method="minmax", min_fidelity=None)
    asked = {"pool": FloatReason("asked", FloatKind.REQUESTED)}
    result = quantize_static(make_convnet(), data, config, keep_float=asked)
    speed = {f.name: f.reason for f in result.float_nodes if f.kind is FloatKind.SPEED}
    assert list(speed) == ["fc"]
    assert "its int8 region (1 node(s) from 'fc') took 4.000 ms" in speed["fc"]
    assert _int32_bias(result.model, "conv")  # conv's region stays int8
    assert not _int32_bias(result.model, "fc")
    # timed: float, int8, the node-level rebuild (not 10 % faster); then float, int8, the
    # region variant, every layer float and that with fc dynamic; then float, int8 and the
    # region variant again
    assert [len(models) for models in timer.timed] == [3, 5, 3]
    assert result.notes[-1].endswith(
        "also timed 1 int8 region(s) slower than float (1 layer(s)) float: 0.950 ms (1.05×), "
        "every layer float compute, weights stored int8: 1.000 ms (1.00×), every layer float "
        "compute, weights stored int8, 1 Gemm/MatMul dynamic int8: 1.000 ms (1.00×); kept: 1 int8 "
        "region(s) slower than float (1 layer(s)) float (0.960 ms against 1.300 ms int8 in a "
        "second timing)"
    )


def test_a_variant_faster_in_one_timing_only_is_not_kept(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = FixedTimer({}, batch1=[1.0, 1.3], then=[1.0, 1.3, 0.98, 0.98], again=[1.0, 1.1, 1.09])
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert is_int8(result.model)
    assert not [f for f in result.float_nodes if f.kind is FloatKind.SPEED]
    assert result.notes[-1].startswith("slower than float here: batch 1: 1.000 ms float")
    assert (
        "weights stored int8: 1.090 ms against 1.100 ms int8 in a second timing, not faster: all "
        "kept int8" in result.notes[-1]
    )


def test_rebuild_still_slower_is_profiled_again(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the rebuild (fc float) is 12 % faster, so it is kept, but still slower than float: its
    # regions are profiled anew, and float compute with int8 weights wins
    timer = FixedTimer(
        {"fc": 3.0}, batch1=[2.0, 2.5, 2.2], then=[2.0, 2.2, 1.9, 1.9], again=[2, 2.2, 1.9]
    )
    result = quantize(make_convnet, make_images, timer, monkeypatch)
    assert timer.calls == ["float", "int8"] * 6
    assert not is_int8(result.model)
    assert result.notes[-1].startswith("batch 1: 2.000 ms float, 2.200 ms int8 (0.91×)")


def test_regions_follow_int8_edges(make_convnet: MakeConvnet) -> None:
    prepared = prepare(make_convnet())
    assert int8_regions(prepared, plan_static(prepared)) == [
        ["conv", "pool", "flatten", "fc", "relu"]
    ]
    split = plan_static(prepared, exclude={"pool": "asked"})
    assert int8_regions(prepared, split) == [["conv", "relu"], ["fc"]]


def test_no_latency_check_measures_nothing(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = FixedTimer({"fc": 3.0}, batch1=[2.0, 2.5, 1.5])
    result = quantize(make_convnet, make_images, timer, monkeypatch, latency_check=False)
    assert timer.calls == [] and not any("batch 1" in n for n in result.notes)
    assert not [f for f in result.float_nodes if f.kind is FloatKind.SPEED]


def test_auto_does_not_run_static_check(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refuse(Timer):
        def batch1_ms(self, models, feeds):  # type: ignore[no-untyped-def]
            raise AssertionError("static's latency check ran inside --mode auto")

    monkeypatch.setattr(latency, "DEFAULT_TIMER", Refuse())
    x = make_images(48, hw=8)
    quantize_auto(
        make_convnet(), CalibrationData({"image": x[:32]}), {"image": x[32:]},
        AutoTarget(min_fidelity=0.9), config=QuantizeConfig(method="minmax"),
        latency_budget_s=0.02,
    )  # fmt: skip


def test_real_timer_runs(make_convnet: MakeConvnet, make_images: MakeImages) -> None:
    """ONNX Runtime's profiler and interleaved timing, end to end: only the form is checked."""
    prepared = make_convnet()
    data = CalibrationData({"image": make_images(32, hw=8)})
    int8 = quantize_static(prepared, data, QuantizeConfig(min_fidelity=None, latency_check=False))
    float_ms, int8_ms = latency.profile_float_int8(
        prepared, int8.model, data.head(prepared, 1), Timer(rounds=1, runs=2)
    )
    assert {"conv", "fc"} <= set(float_ms) and {"conv", "fc"} <= set(int8_ms)
    assert all(ms >= 0 for ms in [*float_ms.values(), *int8_ms.values()])


def test_fused_and_duplicated_names_count_for_their_node() -> None:
    rounds = [
        {"dense/MatMulAddFusion": 1.0, "x_DQ/duplicated": 0.25, "x_DQ": 0.25},
        {"dense/MatMulAddFusion": 9.0, "x_DQ": 0.5},  # an outlier round: the median ignores it
        {"dense/MatMulAddFusion": 2.0, "x_DQ/duplicated": 0.5, "x_DQ": 0.5},
    ]
    assert profile_names.median_by_node(rounds) == {"dense": 2.0, "x_DQ": 0.5}


def _weight_only_then_dynamic(
    make_convnet: MakeConvnet, make_images: MakeImages, timer: Timer, monkeypatch
):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(latency, "DEFAULT_TIMER", timer)
    model, x = wide_convnet(make_convnet), make_images(96, hw=12)
    result = quantize_static(model, CalibrationData({"image": x}), QuantizeConfig(method="minmax"))
    return model, x, result


def test_dynamic_gemm_kept_when_faster_than_float_compute_in_both_timings(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # int8 slower than float; float compute ties float; with fc in dynamic int8, 5 % faster
    # than float compute in the first timing and in the second (float, int8, it, float compute)
    timer = FixedTimer(
        {}, batch1=[1.0, 1.3], then=[1.0, 1.3, 1.0, 0.95], again=[1.0, 1.3, 0.95, 1.0]
    )
    model, x, result = _weight_only_then_dynamic(make_convnet, make_images, timer, monkeypatch)
    ops = [n.op_type for n in result.model.graph.node]
    assert "DynamicQuantizeLinear" in ops and "MatMulInteger" in ops and "Gemm" not in ops
    assert not is_int8(result.model)  # no calibrated (static) activation Q/DQ
    speed = {f.name: f.reason for f in result.float_nodes if f.kind is FloatKind.SPEED}
    assert set(speed) == {"conv", "pool", "flatten"}  # fc is int8 now
    assert "its Gemm/MatMul in dynamic int8" in speed["conv"]
    assert result.notes[-1] == (
        "batch 1: 1.000 ms float, 1.300 ms int8 (0.77×); also timed every layer float compute, "
        "weights stored int8: 1.000 ms (1.00×), every layer float compute, weights stored int8, "
        "1 Gemm/MatMul dynamic int8: 0.950 ms (1.05×); kept: every layer float compute, "
        "weights stored int8, 1 Gemm/MatMul dynamic int8 (0.950 ms against 1.300 ms int8 in a "
        "second timing)"
    )
    assert [len(models) for models in timer.timed] == [2, 4, 4]
    # the fidelity report scores the model written (oracle: ONNX Runtime on the float model)
    got = mean_cosine(run_model(result.model, {"image": x}), run_model(model, {"image": x}))
    assert result.fidelity is not None and result.fidelity.met and result.fidelity.kept_float == 3
    assert 0.999 < got < 1.0 and 0.999 < result.fidelity.achieved < 1.0


def test_dynamic_gemm_not_faster_in_the_second_timing_falls_back_to_float_compute(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 % faster than float compute first, 0.2 % (inside DYNAMIC_EDGE) the second time
    timer = FixedTimer(
        {}, batch1=[1.0, 1.3], then=[1.0, 1.3, 1.0, 0.95], again=[1.0, 1.3, 0.998, 1.0]
    )
    _, _, result = _weight_only_then_dynamic(make_convnet, make_images, timer, monkeypatch)
    assert "MatMulInteger" not in [n.op_type for n in result.model.graph.node]
    assert {f.name for f in result.float_nodes if f.kind is FloatKind.SPEED} == {
        "conv", "pool", "flatten", "fc"
    }  # fmt: skip
    assert result.notes[-1].endswith(
        "kept: every layer float compute, weights stored int8 (1.000 ms against 1.300 ms int8 "
        "in a second timing, where the dynamic one was not faster than it)"
    )


def test_dynamic_gemm_within_the_edge_of_float_compute_is_not_taken(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.2 % faster than float compute: a tie, which its fidelity cost does not pay for
    timer = FixedTimer({}, batch1=[1.0, 1.3], then=[1.0, 1.3, 1.0, 0.998], again=[1.0, 1.3, 1.0])
    _, _, result = _weight_only_then_dynamic(make_convnet, make_images, timer, monkeypatch)
    assert "MatMulInteger" not in [n.op_type for n in result.model.graph.node]
    assert [len(models) for models in timer.timed] == [2, 4, 3]


def test_dynamic_gemm_missing_the_target_is_not_timed(
    make_convnet: MakeConvnet, make_images: MakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quanta.graph import static

    real = static._rescored

    def dynamic_misses(report, built, *args):  # type: ignore[no-untyped-def]
        scored = real(report, built, *args)
        dynamic = any(n.op_type == "MatMulInteger" for n in built[0].graph.node)
        return dataclasses.replace(scored, met=False) if dynamic else scored

    monkeypatch.setattr(static, "_rescored", dynamic_misses)
    timer = FixedTimer({}, batch1=[1.0, 1.3], then=[1.0, 1.3, 0.98], again=[1.0, 1.28, 0.99])
    _, _, result = _weight_only_then_dynamic(make_convnet, make_images, timer, monkeypatch)
    assert "MatMulInteger" not in [n.op_type for n in result.model.graph.node]
    assert [len(models) for models in timer.timed] == [2, 3, 3]
