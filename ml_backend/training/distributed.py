"""The processes of one training run, as torchrun starts them (`labeler train --nproc N`).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (labeler.launch sets the
first three and a file store instead); without them the world is one process and nothing here
touches torch.distributed. Backend `gloo` on CPU, `nccl` on CUDA
(one GPU per process, cuda:LOCAL_RANK). The global batch is the config's `batch_size`, split
evenly over the processes, so N processes take the same optimisation steps as one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar, cast

from core.errors import BadInputError

if TYPE_CHECKING:  # torch is imported where it is used: the launcher (labeler.launch) needs none
    import torch

T = TypeVar("T")
STORE_ENV = "LABELER_DIST_STORE"  # a file store (labeler.launch); unset under torchrun: env://


class BadWorldError(BadInputError):
    """A process count the run cannot use (it does not divide the batch, or exceeds the GPUs)."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, registers the version and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, device: str) -> str:
        """Each process's device: cuda:LOCAL_RANK when the run is on CUDA."""
        if self.distributed and device.startswith("cuda"):
            return f"cuda:{self.local_rank}"
        return device

    def share(self, global_batch: int) -> int:
        """Images per process in one step of `global_batch`."""
        if global_batch % self.size:
            raise BadWorldError(
                f"{self.size} processes cannot split a batch of {global_batch} evenly: "
                "choose a process count that divides it"
            )
        return global_batch // self.size

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box: list[object] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def from_main(self, make: Callable[[], T]) -> T:
        """`make()` run by rank 0 alone (it writes the database), its value on every rank.

        If it raises, rank 0 raises without broadcasting: the others wait until the launcher,
        seeing rank 0 fail, stops them."""
        return cast(T, self.broadcast(make() if self.is_main else None))

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean over the processes (the logged loss of the global batch)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        summed = values.clone()
        dist.all_reduce(summed)
        return summed / self.size


SINGLE = World()


def world_from_env() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def joined(device: str, *, timeout_s: float = 1800.0) -> Iterator[World]:
    """The world of this process, its process group joined for the block (gloo on CPU, nccl on
    CUDA) and left after it."""
    world = world_from_env()
    if not world.distributed:
        yield world
        return
    import torch
    import torch.distributed as dist

    cuda = torch.device(device).type == "cuda"
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise BadWorldError(
                f"process {world.local_rank} has no GPU ({torch.cuda.device_count()} visible)"
            )
        torch.cuda.set_device(world.local_rank)
    store = os.environ.get(STORE_ENV)
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"file://{store}" if store else "env://",
        rank=world.rank,
        world_size=world.size,
        timeout=timedelta(seconds=timeout_s),
    )
    try:
        yield world
    finally:
        dist.destroy_process_group()
