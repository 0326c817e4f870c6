"""equalize_layers (cross-layer equalization) and ``--equalize``.

Oracles: ONNX Runtime runs the equalized graph to the original's outputs (float32); the ranges
after it are checked against their definition, ``max |W1[c]| = max |W2[:, c]|``, computed here
from the written weights; and on a model whose channels were scaled apart (``W1[c] · k_c``,
``W2[:, c] / k_c``: the same function), per-tensor int8 weights keep far more of the float
output with equalization than without, measured against the float model in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from tiny_graphs import make_model

from quanta.graph.calibrate import CalibrationData
from quanta.graph.config import QuantizeConfig
from quanta.graph.equalize import equalize_layers
from quanta.graph.static import quantize_static
from quanta.runtime import make_session, mean_cosine

SPREAD = np.array([0.01, 0.1, 1.0, 10.0, 100.0, 1.0])  # k_c: channels scaled apart


def chain(between: list[str], *, group2: int = 1, spread: bool = True) -> onnx.ModelProto:
    """x (N, 3, 8, 8) -> Conv 3x3 (6) -> between[0] -> Conv 1x1 (6) -> between[1] -> ... -> y."""
    rng = np.random.default_rng(7)
    inits: dict[str, np.ndarray] = {}
    nodes, source, channels = [], "x", 3
    for k, op in enumerate([*between, None]):
        groups = group2 if k == 1 else 1
        w = rng.normal(0.0, 0.5, (6, channels // groups, 3 if k == 0 else 1, 3 if k == 0 else 1))
        if spread and k < len(between):
            w = w * SPREAD.reshape(-1, 1, 1, 1)
        if spread and k > 0:
            w = w / SPREAD.reshape(1, -1, 1, 1) if groups == 1 else w
        inits[f"w{k}"], inits[f"b{k}"] = w, rng.normal(0.0, 0.1, 6) * (SPREAD if spread else 1)
        if spread and k == len(between):
            inits[f"b{k}"] = rng.normal(0.0, 0.1, 6)
        out = "y" if op is None else f"c{k}"
        nodes.append(
            helper.make_node(
                "Conv", [source, f"w{k}", f"b{k}"], [out], name=f"conv{k}",
                kernel_shape=[3, 3] if k == 0 else [1, 1], group=groups,
            )
        )  # fmt: skip
        if op is None:
            break
        extra = []
        if op == "PRelu":
            inits[f"slope{k}"] = rng.uniform(0.05, 0.3, (6, 1, 1))
            extra = [f"slope{k}"]
        attrs = {"alpha": 0.1} if op == "LeakyRelu" else {}
        nodes.append(helper.make_node(op, [out, *extra], [f"a{k}"], name=f"act{k}", **attrs))
        source, channels = f"a{k}", 6
    return make_model(nodes, {"x": ["N", 3, 8, 8]}, {"y": ["N", 6, 6, 6]}, inits, "chain")


X = np.random.default_rng(0).normal(0.0, 1.0, (16, 3, 8, 8)).astype(np.float32)


def run(model: onnx.ModelProto) -> np.ndarray:
    return make_session(model.SerializeToString()).run(None, {"x": X})[0]


def weights(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]


def equalized(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy, equalize_layers(copy)


@pytest.mark.parametrize("between", [["Relu"], ["LeakyRelu", "PRelu"], ["Relu", "Relu"]])
def test_equalized_ranges_meet_and_the_function_stays(between: list[str]) -> None:
    model = chain(between)
    out, pairs = equalized(model)
    assert pairs == len(between)
    onnx.checker.check_model(out, full_check=True)
    reference = run(model)
    np.testing.assert_allclose(run(out), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    w = weights(out)
    for first, second in zip(w, w[1:], strict=False):
        r1 = np.abs(first).reshape(len(first), -1).max(axis=1)
        r2 = np.abs(np.moveaxis(second, 1, 0)).reshape(second.shape[1], -1).max(axis=1)
        np.testing.assert_allclose(r1, r2, rtol=2e-3)  # the sweeps stop within 0.1 %


@pytest.mark.parametrize("case", ["sigmoid_between", "read_twice", "depthwise_second"])
def test_pairs_it_cannot_equalize_stay(case: str) -> None:
    if case == "sigmoid_between":  # Sigmoid(x / s) is not Sigmoid(x) / s
        model = chain(["Sigmoid"])
    elif case == "read_twice":  # scaling the first layer would change what the Relu reads
        model = chain(["Relu"])
        model.graph.node.append(helper.make_node("Relu", ["c0"], ["z"], name="other"))
        model.graph.output.append(helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None))
    else:  # a depthwise Conv's input channel c is its output channel c: nothing compensates
        model = chain(["Relu"], group2=6)
    out, pairs = equalized(model)
    assert pairs == 0
    assert out.SerializeToString() == model.SerializeToString()


def test_equalize_rescues_per_tensor_weights_of_channels_scaled_apart() -> None:
    model = chain(["Relu"])
    data = CalibrationData({"x": np.random.default_rng(1).normal(0, 1, (64, 3, 8, 8)).astype("f")})
    reference = [run(model)]
    scores = {}
    for equalize in (False, True):
        config = QuantizeConfig(
            per_channel=False, equalize=equalize, min_fidelity=None, latency_check=False
        )
        result = quantize_static(model, data, config)
        scores[equalize] = mean_cosine([run(result.model)], reference)
        assert any("cross-layer equalization" in n for n in result.notes) == equalize
    # without: one scale for channels 0.01 to 100 apart rounds the small ones to zero
    assert scores[False] < 0.9
    assert scores[True] > 0.999


def test_cli_equalize_flag_reaches_static(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from quanta.cli import main

    model, calib, out = tmp_path / "chain.onnx", tmp_path / "calib.npz", tmp_path / "q.onnx"
    onnx.save(chain(["Relu"]), model)
    np.savez(calib, x=np.random.default_rng(2).normal(0, 1, (32, 3, 8, 8)).astype("f"))
    args = ["quantize", str(model), "-o", str(out), "--calibration", str(calib)]
    assert main([*args, "--no-latency-check", "--equalize"]) == 0
    said = capsys.readouterr()
    assert "cross-layer equalization: 1 convolution pair(s) equalized" in said.out + said.err
    assert main([*args, "--no-latency-check", "--force"]) == 0
    said = capsys.readouterr()
    assert "cross-layer equalization" not in said.out + said.err
