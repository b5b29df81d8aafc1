"""`labeler train --nproc N`: N copies of the same command as the ranks of one training run.

What torchrun does for one machine, without its rendezvous server: torchrun's TCP store listens
on every interface, which a hospital network should not see. Here the processes meet through a
file store in an owner-only temp folder, and gloo talks over loopback only (GLOO_SOCKET_IFNAME=lo;
NCCL_SOCKET_IFNAME=lo for the GPU bootstrap). Each rank gets RANK, WORLD_SIZE, LOCAL_RANK (as
torchrun sets them) and its share of the CPU threads; every rank dies with this process, and
the first rank to fail stops the others and gives its exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from labeler.lock import die_with_parent
from ml_backend.training.distributed import STORE_ENV, World, world_from_env

_GRACE_S = 10.0


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """`argv` less `option VALUE` / `option=VALUE` (the ranks must not launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def launch_ranks(nproc: int, global_batch: int) -> int | None:
    """`--nproc N` in the launching process: this command line (read from sys.argv, less
    --nproc, so the ranks do not launch again) run as N ranks; their exit code. A count that
    cannot split `global_batch` fails in one line before any process starts. None with N = 1
    or inside a rank: the caller trains in this process."""
    if nproc <= 1 or world_from_env().distributed:
        return None
    World(0, nproc).share(global_batch)
    return run_ranks(without_option(sys.argv[1:], "--nproc"), nproc)


def rank_env(rank: int, nproc: int, store: Path, threads: int) -> dict[str, str]:
    return os.environ | {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(nproc),
        STORE_ENV: str(store),
        "GLOO_SOCKET_IFNAME": "lo",
        "NCCL_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": str(threads),
    }


def run_ranks(argv: Sequence[str], nproc: int, *, module: str = "labeler.cli") -> int:
    """Run `python -m module *argv` as ranks 0..nproc-1; their exit code (the first failure's,
    130 on Ctrl-C)."""
    threads = max(1, (os.cpu_count() or 1) // nproc)
    with tempfile.TemporaryDirectory(prefix="labeler-ranks-") as folder:  # mode 0700
        store = Path(folder) / "store"
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                env=rank_env(rank, nproc, store, threads),
                stdout=None if rank == 0 else subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )
            for rank in range(nproc)
        ]
        try:
            return _wait(procs)
        except KeyboardInterrupt:
            _stop(procs)
            return 130


def _wait(procs: list[subprocess.Popen[bytes]]) -> int:
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            _stop(procs)
            return failed[0] if failed[0] > 0 else 1  # killed by a signal: 1
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the live ranks, SIGKILL what is left after a grace period."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
