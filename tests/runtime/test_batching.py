"""Fixed batch dimensions: models whose inputs fix the batch to 1 or 2, and an output that
carries the batch on axis 1, run over N samples by ``run_model``, ``predict_all``, calibration,
``mean_cosine`` and ``bench_models``; each result checked against NumPy on the same weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quanta.errors import ModelError
from quanta.graph import CalibrationData
from quanta.graph.calibrate import collect_ranges
from quanta.runtime import EvalSet, bench_models, make_session, mean_cosine, run_model
from quanta.runtime.batching import batch_axis, fixed_batch
from quanta.runtime.measure import interleaved_latency, predict_all


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int | str]],
    outputs: dict[str, list[int | str]],
    inits: dict[str, np.ndarray],
) -> onnx.ModelProto:
    """An opset-20 model, float32 inputs and outputs, declared shapes as given (not checked
    against inference: real exporters declare wrong ones)."""
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def rand(*shape: int, seed: int, std: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, std, shape).astype(np.float32)


W = rand(4, 6, seed=0)  # (in, T*C) with T = 3, C = 2


def matmul(batch: int | str) -> onnx.ModelProto:
    """y = x @ W, x (batch, 4), y (batch, 6)."""
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    return make_model([node], {"x": [batch, 4]}, {"y": [batch, 6]}, {"w": W})


def time_major(batch: int | str, declared: list[int | str]) -> onnx.ModelProto:
    """y = (x @ W) as (batch, T, C), transposed to (T, batch, C): the batch on axis 1, as a
    sequence model's (T, N, C) output; ``declared`` is the output shape the model claims."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["r"]),  # (batch, 3, 2)
        helper.make_node("Transpose", ["r"], ["y"], perm=[1, 0, 2]),  # (3, batch, 2)
    ]
    inits = {"w": W, "shape": np.array([-1, 3, 2], np.int64)}
    return make_model(nodes, {"x": [batch, 4]}, {"y": declared}, inits)


def samples(n: int, seed: int = 1) -> np.ndarray:
    return rand(n, 4, seed=seed, std=1.0)


@pytest.mark.parametrize("batch", [1, 2])
def test_run_model_runs_every_sample_of_a_fixed_batch(batch: int) -> None:
    x = samples(5)  # 5 = 2 calls of 2 and one filled up, for batch 2
    (y,) = run_model(matmul(batch), {"x": x})
    np.testing.assert_allclose(y, x @ W, rtol=1e-5, atol=1e-6)
    # the old single call: ONNX Runtime refuses 5 samples where the model fixes the batch
    with pytest.raises(Exception, match="Expected: " + str(batch)):
        make_session(matmul(batch).SerializeToString()).run(None, {"x": x})


def test_output_with_batch_on_axis_1_comes_back_samples_first() -> None:
    x = samples(4)
    expected = (x @ W).reshape(4, 3, 2)  # (N, T, C)
    # fixed batch 1, declared shape wrong (as ddddocr: (1, seqlen) for a (T, 1, C) output)
    (y,) = run_model(time_major(1, [1, "seqlen"]), {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    # dynamic batch: the declared batch name picks axis 1, chunks of 3 joined along it
    (y,) = run_model(time_major("N", [3, "N", 2]), {"x": samples(3)}, batch_size=2)
    np.testing.assert_allclose(y, (samples(3) @ W).reshape(3, 3, 2), rtol=1e-5, atol=1e-6)


def test_batch_axis_rule() -> None:
    assert batch_axis((22, 1, 8210), 1) == 1  # ddddocr: (T, 1, C)
    assert batch_axis((1, 1, 128), 1) == 0  # silero's state: first axis of size 1
    assert batch_axis((3, 3, 2), 3, [3, "N", 2], {"N"}) == 1  # the declared batch name decides
    assert batch_axis((3, 3, 2), 3) == 0
    assert batch_axis((5, 7), 2) is None


def test_fixed_batch_reads_the_inputs() -> None:
    assert fixed_batch(matmul(2)) == 2
    assert fixed_batch(matmul("N")) is None
    assert fixed_batch(make_session(matmul(1).SerializeToString())) == 1
    declared_minus_one = matmul("N")
    dim = declared_minus_one.graph.input[0].type.tensor_type.shape.dim[0]
    dim.dim_value = -1  # Paddle2ONNX's "-1": dynamic, as ONNX Runtime reads it
    assert fixed_batch(declared_minus_one) is None
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    two = make_model(nodes, {"a": [1, 4], "b": [2, 4]}, {"y": [2, 4]}, {})
    with pytest.raises(ModelError, match=r"fix different batch sizes \('a' 1, 'b' 2\)"):
        fixed_batch(two)


def test_mean_cosine_is_per_sample_along_the_batch_axis() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(5, 2, 3))  # (T, N, C)
    out = ref.copy()
    out[:, 1] = -out[:, 1]  # sample 1 flipped: cosine -1; sample 0 identical: 1
    assert mean_cosine([out], [ref], batch_axes=[1]) == pytest.approx(0.0)
    # the same outputs samples first, as run_model returns them
    assert mean_cosine([out.transpose(1, 0, 2)], [ref.transpose(1, 0, 2)]) == pytest.approx(0.0)
    # over axis 0 (the old reading) the rows would be time steps: each half flipped, also 0,
    # but different-length outputs are now a clear error rather than a broadcast failure
    with pytest.raises(ValueError, match="expected the same shape"):
        mean_cosine([out[:, :1]], [ref])


def test_predict_all_on_fixed_batch_1() -> None:
    session = make_session(time_major(1, [1, "seqlen"]).SerializeToString())
    x = samples(3)
    got = predict_all(session, {"x": x})
    np.testing.assert_allclose(got["y"], (x @ W).reshape(3, 3, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 2])
def test_calibration_runs_a_fixed_batch(batch: int) -> None:
    x = samples(5)
    observers = collect_ranges(matmul(batch), ["y"], CalibrationData({"x": x}))
    y = x @ W
    # filler samples repeat the first ones: the min-max range is that of the 5 samples
    assert observers["y"].min_val == pytest.approx(float(y.min()), rel=1e-5)
    assert observers["y"].max_val == pytest.approx(float(y.max()), rel=1e-5)
    data = CalibrationData({"x": x})
    assert [len(b["x"]) for b in data.batches(matmul(batch))] == [batch] * -(-5 // batch)
    assert len(data.head(matmul(batch), 4)["x"]) == 4  # run_model splits it, not head


def test_bench_times_a_fixed_batch_at_its_size(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "fixed.onnx"
    onnx.save_model(matmul(1), path)
    data = EvalSet({"x": samples(6)}, None, "test")
    (result,) = bench_models([path], data, batches=(1, 4), budget_s=0.01, reference=path)
    assert set(result.latency) == {1}  # batch 4 not timed: the model refuses it
    assert result.extra["fixed_batch"] == 1
    fid = result.extra["fidelity"]["y"]  # type: ignore[index]
    assert fid["samples"] == 6 and fid["cosine_min"] == pytest.approx(1.0)


def test_latency_of_a_fixed_batch_2_is_per_call_of_2() -> None:
    sessions = [make_session(matmul(m).SerializeToString()) for m in (2, "N")]
    fixed, dynamic = interleaved_latency(sessions, {"x": samples(3)}, 1, budget_s=0.01)
    assert (fixed.batch, dynamic.batch) == (2, 1)  # asked 1: the fixed model runs its 2
