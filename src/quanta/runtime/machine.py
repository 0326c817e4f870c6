"""A one-line description of this machine, for result files: CPU, cores, integer-relevant ISA."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import onnxruntime

__all__ = ["cpu_flags", "describe_machine", "int8_pairs_saturate"]

_VNNI = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    return model, flags


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    return _cpuinfo()[1]


def int8_pairs_saturate(flags: set[str] | None = None) -> bool:
    """Whether ONNX Runtime's u8 x s8 kernels here add pairs of products in saturating int16
    (``vpmaddubsw``: x86 with AVX2 but no VNNI). Then two full-range products (255 x 127 x 2 =
    64,770) can exceed 32,767; 7-bit weights (|w| <= 64: 32,640) cannot."""
    flags = cpu_flags() if flags is None else flags
    return "avx2" in flags and not (_VNNI & flags)


def describe_machine() -> str:
    model, flags = _cpuinfo()
    known = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    isa: list[str] = [f for f in known if f in flags]
    if flags and not {"avx512_vnni", "avx_vnni"} & flags:
        isa.append("no VNNI")
    cores = os.cpu_count() or 1
    isa_text = " ".join(isa) or platform.machine()
    return f"{model}, {cores} cores, {isa_text}, onnxruntime {onnxruntime.__version__}"
