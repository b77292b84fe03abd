"""Data-parallel generation under `torchrun`: which images each process makes, and sharing results.

Every process builds the same full list of images, then keeps every `world_size`-th one starting at its
rank (round-robin). Seeds belong to images, not processes, so the union of all ranks' files is exactly
what one process would write. torchrun sets `WORLD_SIZE`, `RANK` and `LOCAL_RANK`; without it (or with
one process) nothing here touches `torch.distributed`.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: rank r of world_size, on local GPU local_rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 prints progress and the summary."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share: items rank, rank + world_size, … (each item lands on exactly one rank)."""
        return list(items[self.rank :: self.world_size])


def context_from_env(environ: dict[str, str] | None = None) -> DistributedContext:
    """Read torchrun's variables; a plain run is rank 0 of 1."""
    environ = os.environ if environ is None else environ
    return DistributedContext(
        rank=int(environ.get("RANK", 0)),
        world_size=int(environ.get("WORLD_SIZE", 1)),
        local_rank=int(environ.get("LOCAL_RANK", 0)),
    )


def init_process_group(context: DistributedContext, device_type: str) -> None:
    """Join torchrun's process group: NCCL between GPUs, Gloo on the CPU. No-op for a single process."""
    if not context.enabled:
        return
    import torch
    import torch.distributed as dist

    if device_type == "cuda":
        # NCCL's object collectives run on the current device, so each rank must own its GPU first.
        torch.cuda.set_device(context.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")


def broadcast_from_main(context: DistributedContext, value: Any) -> Any:
    """Rank 0's `value` on every rank (e.g. the random seed, which must be the same everywhere)."""
    if not context.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(context: DistributedContext, items: list[Any]) -> list[Any] | None:
    """Concatenate every rank's list on rank 0 (None elsewhere); this also waits for all ranks to finish."""
    if not context.enabled:
        return items
    import torch.distributed as dist

    gathered: list[list[Any]] | None = [[] for _ in range(context.world_size)] if context.is_main else None
    dist.gather_object(items, gathered, dst=0)
    return [item for part in gathered for item in part] if gathered is not None else None


def shutdown(context: DistributedContext) -> None:
    """Leave the process group so torchrun sees a clean exit."""
    if not context.enabled:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
