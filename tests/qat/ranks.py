"""Start the ranks of a multi-process test from a process that has already imported torch.

``torch.multiprocessing.spawn`` starts each rank as a fresh interpreter, which imports torch,
its ONNX exporter, ONNX Runtime and quanta again: about 5 s of CPU per rank, most of what a
two-rank test of a tiny model costs on two cores. Here the ranks are forked from one
``forkserver`` process that imported those modules once for the whole test session. It has
run no torch or ONNX Runtime computation, so it has no thread pools that a fork could break,
and each rank still starts with its own fresh state (nothing of an earlier run carries over).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp

# what a rank imports anyway: torch.distributed (gloo), torch._dynamo (which
# torch.use_deterministic_algorithms imports), the ONNX exporter and quanta's QAT and runtime
_PRELOAD = [
    "torch",
    "torch.distributed",
    "torch._dynamo",
    "torch.onnx",
    "onnxscript",
    "onnxruntime",
    "quanta.models",
    "quanta.qat",
    "quanta.runtime",
]


def spawn_ranks(fn: Callable[..., Any], args: tuple[Any, ...], nprocs: int = 2) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs, join=True)``, forked from a preloaded
    server: ``fn(rank, *args)`` runs in each of ``nprocs`` processes; a failure in any raises."""
    # takes effect when the first call starts the server; later calls reuse it
    multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
    mp.start_processes(fn, args=args, nprocs=nprocs, join=True, start_method="forkserver")
