"""QAT range observers under torch.distributed (gloo, 2 CPU processes): every rank ends with
the ranges one process would have on the whole global batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from ranks import spawn_ranks

from quanta.qat.modules import ActivationQuantizer

STEPS, GLOBAL_BATCH = 4, 8


def _batches() -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    return [torch.from_numpy(rng.normal(0, 1 + s, (GLOBAL_BATCH, 5)).astype(np.float32))
            for s in range(STEPS)]  # fmt: skip


def _rank(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        q = ActivationQuantizer(ema_decay=0.9)
        q.train()
        share = GLOBAL_BATCH // world
        for batch in _batches():
            q(batch[rank * share : (rank + 1) * share])  # this rank's slice only
        np.save(f"{out}/rank{rank}.npy", np.array([float(q.min_val), float(q.max_val)]))
    finally:
        dist.destroy_process_group()


def test_ranges_are_all_reduced_across_ranks(tmp_path: Path) -> None:
    init = f"file://{tmp_path / 'rendezvous'}"
    spawn_ranks(_rank, (2, init, str(tmp_path)))
    ranks = [np.load(tmp_path / f"rank{r}.npy") for r in range(2)]
    single = ActivationQuantizer(ema_decay=0.9)
    single.train()
    for batch in _batches():
        single(batch)  # one process, the whole global batch
    want = np.array([float(single.min_val), float(single.max_val)])
    np.testing.assert_array_equal(ranks[0], ranks[1])
    np.testing.assert_allclose(ranks[0], want, rtol=1e-12)
    # and not rank 0's own slice: that is what DDP's buffer broadcast alone would give
    only_rank0 = ActivationQuantizer(ema_decay=0.9)
    only_rank0.train()
    for batch in _batches():
        only_rank0(batch[: GLOBAL_BATCH // 2])
    assert not np.allclose(ranks[0], [float(only_rank0.min_val), float(only_rank0.max_val)])
