"""Shared fixtures: a tiny float conv net built with ``onnx.helper`` (opset 20), and its inputs;
a writer of tiny MNIST IDX directories; one torch intra-op thread for the session."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

OPSET = 20


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, as the tests' DDP ranks and ``--nproc`` ranks do.

    The tests' models are tiny, so a second thread gains nothing; on a shared two-core machine
    OpenMP's waiting threads made a QAT step 7 to 18 times slower than one thread. One thread
    also makes float results independent of the machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build_convnet(
    *,
    hw: int = 8,
    channels: int = 4,
    seed: int = 0,
    trans_b: int = 1,
    flatten: str = "Flatten",
    head: str | None = None,
) -> onnx.ModelProto:
    """Conv(1->channels, 3x3) -> Relu -> MaxPool 2 -> Flatten|Reshape -> Gemm 10 [-> head].

    Input ``image`` float32 ``(N, 1, hw, hw)``; output ``logits`` float32 ``(N, 10)``. Node names
    are the lower-case op names (``conv``, ``relu``, ``pool``, ``flatten``, ``fc``, ``head``).
    """
    rng = np.random.default_rng(seed)
    k = channels * ((hw - 2) // 2) ** 2  # features after the pool
    conv_w = rng.normal(0.0, 0.5, (channels, 1, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0.0, 0.1, (channels,)).astype(np.float32)
    fc_w = rng.normal(0.0, 0.2, (10, k) if trans_b else (k, 10)).astype(np.float32)
    fc_b = rng.normal(0.0, 0.1, (10,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(conv_w, "conv.weight"),
        numpy_helper.from_array(conv_b, "conv.bias"),
        numpy_helper.from_array(fc_w, "fc.weight"),
        numpy_helper.from_array(fc_b, "fc.bias"),
    ]
    fc_out = "fc_out" if head else "logits"
    if flatten == "Flatten":
        flat = helper.make_node("Flatten", ["pool_out"], ["flat"], name="flatten")
    elif flatten == "Reshape":
        inits.append(numpy_helper.from_array(np.array([-1, k], np.int64), "flat_shape"))
        flat = helper.make_node("Reshape", ["pool_out", "flat_shape"], ["flat"], name="flatten")
    else:
        raise ValueError(f"flatten={flatten!r}; expected 'Flatten' or 'Reshape'")
    nodes = [
        helper.make_node(
            "Conv", ["image", "conv.weight", "conv.bias"], ["conv_out"], name="conv",
            kernel_shape=[3, 3],
        ),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node(
            "MaxPool", ["relu_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        flat,
        helper.make_node(
            "Gemm", ["flat", "fc.weight", "fc.bias"], [fc_out], name="fc", transB=trans_b
        ),
    ]  # fmt: skip
    if head:
        nodes.append(helper.make_node(head, [fc_out], ["logits"], name="head"))
    graph = helper.make_graph(
        nodes,
        "tiny_convnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def random_images(n: int, hw: int = 8, seed: int = 1) -> np.ndarray:
    """``n`` images ``(n, 1, hw, hw)`` with pixels uniform in [0, 1), as MNIST's."""
    return np.random.default_rng(seed).random((n, 1, hw, hw), dtype=np.float32)


@pytest.fixture
def make_convnet() -> Callable[..., onnx.ModelProto]:
    return build_convnet


@pytest.fixture
def make_images() -> Callable[..., np.ndarray]:
    return random_images


IDX_NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_mnist_dir(
    root: Path, n_train: int = 6, n_test: int = 4, *, gz: bool = False, side: int = 28
) -> dict[str, np.ndarray]:
    """Write four tiny IDX files; return the arrays written, keyed by file name."""
    rng = np.random.default_rng(1)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        IDX_NAMES[1]: np.arange(n_train, dtype=np.uint8) % 10,
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        IDX_NAMES[3]: (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        (root / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.fixture(autouse=True)
def neutral_latency_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static quantization's latency check measures this machine; tests get a timer that finds
    no layer slower in int8 and the int8 model twice as fast as float at batch 1, so that
    models stay deterministic (tests of the check inject their own timer)."""
    from quanta.graph import latency

    class NeutralTimer(latency.Timer):
        def node_times(self, model, feeds):  # type: ignore[no-untyped-def]
            return {}

        def batch1_ms(self, models, feeds):  # type: ignore[no-untyped-def]
            return [1.0] + [0.5] * (len(models) - 1)

    monkeypatch.setattr(latency, "DEFAULT_TIMER", NeutralTimer())
