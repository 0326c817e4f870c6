"""A one-line description of this machine, for result files: CPU, cores, integer-relevant ISA."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["describe_machine"]


def describe_machine() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    known = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    isa: list[str] = [f for f in known if f in flags]
    if flags and not {"avx512_vnni", "avx_vnni"} & flags:
        isa.append("no VNNI")
    import onnxruntime

    cores = os.cpu_count() or 1
    isa_text = " ".join(isa) or platform.machine()
    return f"{model}, {cores} cores, {isa_text}, onnxruntime {onnxruntime.__version__}"
