"""Process-wide float settings, made once by each entry point: the `labeler` CLI (which also
starts the HTTP backend), the training child, the benches and the test session. Constructors and
training functions leave the process's floating-point state alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def flush_denormals() -> None:
    """Flush denormal floats to zero in this thread and the threads it starts afterwards.

    Random-init models produce denormals, and they made CPU training and inference steps 2-8x
    slower. numpy reads its float limits first: under flush-to-zero it would warn, at its first
    `finfo`, that the smallest subnormal is zero.
    """
    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype)
    torch.set_flush_denormal(True)


CPU_FLAGS = {
    "avx2": "avx2",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx": "amx_tile",
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, bool | str]:
    """The instruction sets the int8 and bf16 paths depend on, read from this machine now (never
    assumed: the developers' CPU has AVX512-BF16, hospital servers often AVX2 only)."""
    try:
        line = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
        present = set(line.split(":", 1)[1].split())
    except (OSError, StopIteration):
        present = set()
    flags: dict[str, bool | str] = {name: flag in present for name, flag in CPU_FLAGS.items()}
    flags["torch_capability"] = torch.backends.cpu.get_cpu_capability()
    return flags


def flag_line(flags: dict[str, bool | str] | None = None) -> str:
    """One line naming the flags: printed by the benches, stored with a precision choice (a
    choice measured on one CPU is not trusted on another)."""
    flags = cpu_flags() if flags is None else flags
    shown = ", ".join(f"{k} {'yes' if flags[k] else 'no'}" for k in CPU_FLAGS)
    return f"cpu flags: {shown} (torch kernels: {flags['torch_capability']})"
