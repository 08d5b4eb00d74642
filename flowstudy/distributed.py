"""Data parallelism through torchrun: process-group set-up from its environment and rank helpers.

``torchrun --nproc_per_node=N -m flowstudy.train ...`` starts N processes; each trains on its
shard of every global batch (``train.batch_size`` is global), gradients are averaged by DDP, and
only rank 0 logs, shows progress and writes files. Without torchrun everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from flowstudy.errors import UserError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce ``tensor`` in place by sum (a no-op on one process)."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on any (e.g. a stop signal seen by one rank)."""
        if not self.active:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def check_ranks_fit(local_ranks: int, cuda_devices: int) -> None:
    """One CUDA device per rank on this machine, or a one-line error naming the counts (instead
    of the CUDA traceback "invalid device ordinal" that the surplus ranks would die with)."""
    if local_ranks > cuda_devices:
        raise UserError(f"torchrun started {local_ranks} ranks but this machine has "
                        f"{cuda_devices} CUDA device(s); use --nproc_per_node<={cuda_devices} or "
                        f"train.device=cpu for gloo")


def from_environment(cuda: bool) -> Dist:
    """Join torchrun's process group if this process was started by torchrun (NCCL with one
    CUDA device per rank when ``cuda``, else gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        check_ranks_fit(int(os.environ.get("LOCAL_WORLD_SIZE", world)), torch.cuda.device_count())
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
