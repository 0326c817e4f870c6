"""QAT under DistributedDataParallel (gloo, 2 CPU processes) against one process with the same
global batch: a conv + BatchNorm + linear model, an odd global batch (unequal shares) and a short
last batch. The oracle is the single-process run of the same code.

Stated tolerance: the ranks sum gradients and statistics in another order than one process, so
float weights agree to ~1e-6 (not bit for bit); the exported int8 weights may differ by one step
where a weight sits on a rounding boundary; the activation scales agree to 1e-5 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.distributed as dist
from onnx import numpy_helper
from ranks import spawn_ranks
from torch import nn

from quanta.distributed import batch_share
from quanta.models import TrainConfig, TrainState
from quanta.qat import export_qat_onnx, prepare_qat, train_qat
from quanta.runtime import make_session

GLOBAL_BATCH, SAMPLES, EPOCHS, DELAY = 15, 50, 2, 3  # 4 steps per epoch: 15, 15, 15, 5


class _ConvBnNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # no conv bias before BatchNorm: its gradient is only rounding noise, which Adam would
        # turn into full-size steps that differ between any two summation orders
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.bn(self.conv(x))))))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = rng.random((SAMPLES, 1, 12, 12), dtype=np.float32)
    return images, rng.integers(0, 10, SAMPLES)


def _train(out: Path, resume: str = "") -> None:
    """Train (or resume) and, on rank 0, write a state per epoch and export; every rank saves
    its final state to compare ranks."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.manual_seed(0)
    qat = prepare_qat(_ConvBnNet())
    images, labels = _data()
    config = TrainConfig(epochs=EPOCHS, batch_size=GLOBAL_BATCH, learning_rate=1e-2, shift=1)

    def on_epoch(state: TrainState) -> None:
        if rank == 0:
            state.save(out / f"epoch{state.epoch}.pt")

    train_qat(qat, images, labels, config, quant_delay=DELAY, on_epoch=on_epoch,
              resume=TrainState.load(resume) if resume else None)  # fmt: skip
    state = {k: v.detach().clone() for k, v in qat.state_dict().items()}
    torch.save(state, out / f"state{rank}.pt")
    if rank == 0:
        export_qat_onnx(qat, out / "model.onnx", torch.from_numpy(images[:8]))


def _rank(rank: int, world: int, init: str, out: str, resume: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        _train(Path(out), resume)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    single, ddp = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("ddp")
    _train(single)
    init = f"file://{tmp_path_factory.mktemp('rdzv') / 'store'}"
    spawn_ranks(_rank, (2, init, str(ddp), ""))
    # the same 2-process run, stopped after epoch 1 and resumed from rank 0's checkpoint
    resumed = tmp_path_factory.mktemp("ddp_resumed")
    init = f"file://{tmp_path_factory.mktemp('rdzv') / 'store'}"
    spawn_ranks(_rank, (2, init, str(resumed), str(ddp / "epoch1.pt")))
    return {"single": single, "ddp": ddp, "resumed": resumed}


def _initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def test_batch_shares_cover_each_batch_once() -> None:
    for n in range(0, 20):
        for world in (1, 2, 3):
            shares = [batch_share(n, r, world) for r in range(world)]
            covered = np.concatenate([np.arange(n)[s] for s in shares])
            np.testing.assert_array_equal(covered, np.arange(n))
            sizes = [s.stop - s.start for s in shares]
            assert max(sizes) - min(sizes) <= 1


def test_ranks_hold_identical_weights_and_ranges(runs: dict[str, Path]) -> None:
    s0 = torch.load(runs["ddp"] / "state0.pt", weights_only=True)
    s1 = torch.load(runs["ddp"] / "state1.pt", weights_only=True)
    assert s0.keys() == s1.keys()
    for key in s0:
        torch.testing.assert_close(s0[key], s1[key], rtol=0, atol=0, msg=key)


def test_two_processes_train_what_one_process_trains(runs: dict[str, Path]) -> None:
    one = torch.load(runs["single"] / "state0.pt", weights_only=True)
    two = torch.load(runs["ddp"] / "state0.pt", weights_only=True)
    assert one.keys() == two.keys()
    moved = 0.0
    for key in one:
        if one[key].is_floating_point():
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=2e-6, msg=key)
            moved = max(moved, float((one[key].double() - two[key].double()).abs().max()))
        else:
            assert torch.equal(two[key], one[key]), key
    # the global BatchNorm statistics: ranks normalized by the whole batch, not their share
    # (with per-share statistics the running mean would be off by far more than 2e-6)
    assert int(two["conv.bn.num_batches_tracked"]) == EPOCHS * 4


def test_exported_models_agree(runs: dict[str, Path]) -> None:
    one, two = runs["single"] / "model.onnx", runs["ddp"] / "model.onnx"
    assert not list(runs["ddp"].glob(".*.tmp"))  # rank 0 wrote atomically, nobody else wrote
    a, b = _initializers(one), _initializers(two)
    assert a.keys() == b.keys()
    for name, value in a.items():
        if value.dtype == np.int8:
            diff = np.abs(value.astype(np.int32) - b[name].astype(np.int32))
            assert diff.max() <= 1 and (diff == 0).mean() >= 0.99, name
        elif value.dtype == np.float32 and value.size:
            np.testing.assert_allclose(b[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    images, _ = _data()
    sa, sb = make_session(one.read_bytes()), make_session(two.read_bytes())
    feed = {sa.get_inputs()[0].name: images}
    ya, yb = sa.run(None, feed)[0], sb.run(None, feed)[0]
    # one output step of the logits' grid, at most two steps apart
    graph = onnx.load(one).graph
    last = next(n for n in graph.node if n.output[0] == graph.output[0].name)
    assert last.op_type == "DequantizeLinear"
    step = float(a[last.input[1]])
    assert np.abs(ya - yb).max() <= 2 * step + 1e-6


def test_rank0_checkpoints_resume_the_distributed_run_exactly(runs: dict[str, Path]) -> None:
    state = TrainState.load(runs["ddp"] / "epoch1.pt")
    assert state.epoch == 1 and len(state.rng) == 2  # both ranks' dropout streams
    assert not torch.equal(state.rng[0], state.rng[1])
    assert sorted(p.name for p in runs["ddp"].glob("epoch*.pt")) == ["epoch1.pt", "epoch2.pt"]
    straight = torch.load(runs["ddp"] / "state0.pt", weights_only=True)
    for rank in (0, 1):
        resumed = torch.load(runs["resumed"] / f"state{rank}.pt", weights_only=True)
        for key, value in straight.items():
            assert torch.equal(resumed[key], value), key
    assert (runs["resumed"] / "model.onnx").read_bytes() == (
        runs["ddp"] / "model.onnx"
    ).read_bytes()


def test_single_process_is_unaffected_by_the_distributed_path(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Without a process group, train_qat is the plain loop: same seed, same bytes."""
    assert not dist.is_initialized()  # the ranks joined their groups in their own processes
    first = (runs["single"] / "model.onnx").read_bytes()  # trained the same way, by the fixture
    _train(tmp_path)
    assert (tmp_path / "model.onnx").read_bytes() == first
