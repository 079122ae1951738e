"""torch.distributed plumbing: process group from torchrun's environment, deterministic batch
sharding, model wrapping (DDP, or FSDP2 ``fully_shard`` behind a flag).

Sharding: the run sees one infinite stream of dataset indices, epoch e being a permutation of
the dataset drawn from (seed, e). Step s takes stream positions [s*B, (s+1)*B) (B = global
batch); rank r takes the contiguous slice [r*B/W, (r+1)*B/W). Every random draw of a sample is
keyed by its stream position (stages.make_draws), so W ranks with B/W samples each compute the
same gradient (DDP averages the per-rank mean losses) as one process with B samples.

Launch (the package docstring, dreamactor_core/train/__init__.py, has the full recipe)::

    torchrun --nproc_per_node 8 -m dreamactor_core.train --config cfg.json --stage 1 \
        --steps 20000 --out runs/s1 --init runs/vae
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST0:29500 \
        --rdzv_id dreamactor-s3 -m dreamactor_core.train --config cfg.json --stage 3 \
        --steps 30000 --out runs/s3 --init runs/s2 --fsdp
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but no GPU is visible; use --device cpu")
        device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device: str = "auto") -> DistContext:
    """Joins the process group described by torchrun's environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT); a plain ``python -m`` run is a world of one.
    Backend: NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    return DistContext(rank, world, local_rank, dev)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def mean_across_ranks(value: torch.Tensor, ctx: DistContext) -> float:
    value = value.detach().float().reshape(1).clone()
    if ctx.distributed:
        dist.all_reduce(value)
        value /= ctx.world_size
    return float(value)


@lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def stream_index(seed: int, position: int, n: int) -> int:
    """Dataset index at a position of the run's index stream."""
    return int(_epoch_permutation(int(seed), position // n, n)[position % n])


def local_positions(step: int, batch_size: int, ctx: DistContext) -> list[int]:
    if batch_size % ctx.world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes "
                         f"({ctx.world_size}); it is the global batch")
    per_rank = batch_size // ctx.world_size
    start = step * batch_size + ctx.rank * per_rank
    return list(range(start, start + per_rank))


class StepBatchSampler(Sampler):
    """Yields this rank's dataset indices for steps start_step .. end_step - 1 (for DataLoader's
    ``batch_sampler``; worker processes then load batches in the background). With ``echo`` > 1,
    step s trains on batch s // echo, so each batch is yielded once for its ``echo`` steps (the
    first one only for the steps left of it when a run resumes mid-batch)."""

    def __init__(self, dataset_size: int, batch_size: int, seed: int, ctx: DistContext,
                 start_step: int, end_step: int, echo: int = 1):
        self.n, self.batch_size, self.seed, self.ctx = dataset_size, batch_size, seed, ctx
        self.first, self.end = start_step // echo, -(-end_step // echo)  # batch numbers

    def __len__(self) -> int:
        return max(0, self.end - self.first)

    def __iter__(self):
        for batch in range(self.first, self.end):
            yield [stream_index(self.seed, p, self.n)
                   for p in local_positions(batch, self.batch_size, self.ctx)]


def wrap_model(model: nn.Module, ctx: DistContext, fsdp: bool) -> nn.Module:
    """DDP over the trainable parameters, or FSDP2 (``fully_shard``: parameters, gradients and
    optimizer state sharded over all ranks, one unit per DiT block plus the rest; bf16 compute
    with fp32 gradient reduction on GPUs). A single process gets the model back unchanged."""
    if not ctx.distributed:
        return model
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if ctx.device.type == "cuda" else MixedPrecisionPolicy())
        for block in model.dit.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        return fully_shard(model, mesh=mesh, mp_policy=policy)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[ctx.device.index]
                                   if ctx.device.type == "cuda" else None)
