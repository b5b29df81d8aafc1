"""ml_backend.runtime: the CPU flags are read from this machine, never assumed."""

from __future__ import annotations

from pathlib import Path

from ml_backend.runtime import CPU_FLAGS, cpu_flags, flag_line


def test_flags_are_read_from_cpuinfo_not_assumed(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni\n")
    flags = cpu_flags(info)
    assert {k: flags[k] for k in CPU_FLAGS} == {
        "avx2": True,
        "avx512_vnni": True,
        "avx512_bf16": False,
        "amx": False,
    }
    assert flag_line(flags).startswith("cpu flags: avx2 yes, avx512_vnni yes, avx512_bf16 no")
    assert not any(cpu_flags(tmp_path / "missing")[k] for k in CPU_FLAGS)
