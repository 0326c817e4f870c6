"""torch.distributed plumbing: which rank this process is, each rank's share of a global batch,
and launching ranks on this machine with PyTorch's own elastic launcher (what ``torchrun`` runs).

quanta never runs its own process-group protocol: ranks are started by ``torchrun`` (or by
``launch_local``, which is ``torchrun --standalone`` as a function), join the default process
group from the ``RANK``/``WORLD_SIZE``/``MASTER_*`` environment, and talk through gloo on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Sequence

import torch.distributed as dist

from quanta.errors import InputError

__all__ = [
    "batch_share",
    "is_distributed",
    "launch_local",
    "launched_by_torchrun",
    "process_group",
    "rank_and_world",
]


def is_distributed() -> bool:
    """Whether this process is one of several ranks of an initialized process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def batch_share(n: int, rank: int, world: int) -> slice:
    """The contiguous part of an ``n``-sample global batch that ``rank`` of ``world`` trains on.

    Shares differ by at most one sample and cover the batch exactly once, in order.
    """
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def launched_by_torchrun() -> bool:
    """Whether the environment names this process a rank of a multi-process job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(backend: str = "gloo") -> Iterator[tuple[int, int]]:
    """Join the job described by the torchrun environment; yield ``(rank, world_size)``.

    Leaves through a barrier, so no rank tears the group down while another still uses it.
    """
    dist.init_process_group(backend)
    try:
        yield dist.get_rank(), dist.get_world_size()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch_local(nproc: int, module_args: Sequence[str]) -> int:
    """Run ``python -m <module_args>`` as ``nproc`` ranks on this machine; return its exit status.

    The same as ``torchrun --standalone --nproc-per-node NPROC -m ...``: a c10d rendezvous on a
    free local port, no restarts. Each rank gets ``cpu_count // nproc`` intra-op threads (at
    least one), so the ranks share the cores instead of oversubscribing them. Ranks print their
    own messages; a failed rank's exit status is returned (the lowest rank's if several failed),
    without the launcher's traceback.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise InputError(f"--nproc must be >= 1, got {nproc}")
    threads = max(1, (os.cpu_count() or 1) // nproc)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    launcher_log = logging.getLogger("torch.distributed.elastic")
    level = launcher_log.level
    launcher_log.setLevel(logging.CRITICAL)  # its failure report repeats the ranks' own errors
    # The ranks inherit this process's environment (torchrun warns when OMP_NUM_THREADS is
    # unset); the launcher also writes TORCHELASTIC_* variables there. Restored afterwards.
    saved = dict(os.environ)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        elastic_launch(config, entrypoint=sys.executable)(*module_args)
    except ChildFailedError as exc:
        return min(exc.failures.items())[1].exitcode or 1
    finally:
        launcher_log.setLevel(level)
        os.environ.clear()
        os.environ.update(saved)
    return 0
