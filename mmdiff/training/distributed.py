"""torchrun support: process-group set-up and a resumable, sharded stream of sample indices."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mmdiff.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = "auto") -> DistInfo:
    """Initialise DDP when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of n samples in an epoch: the same on every rank."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def batch_indices(n: int, batch: int, seed: int, step: int, rank: int, world: int) -> tuple[int, list[int]]:
    """(epoch, indices) of the local batch at global `step`: each epoch is a permutation split across ranks
    (rank r takes every world-th sample), cut into local batches (the last partial one dropped).
    A pure function of step, so a resumed run continues exactly where it stopped."""
    per_rank = n // world
    per_epoch = per_rank // batch
    if per_epoch == 0:
        raise ValueError(f"the dataset has {n} clips: too few for {world} rank(s) x batch {batch}")
    epoch, k = divmod(step, per_epoch)
    order = epoch_order(n, seed, epoch)[rank::world][:per_rank]
    return epoch, order[k * batch:(k + 1) * batch].tolist()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x
