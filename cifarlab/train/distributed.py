"""Device choice and DistributedDataParallel set-up for ``torchrun`` launches."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0  # global process index; rank 0 writes the log and the checkpoints
    world_size: int = 1  # number of training processes
    local_rank: int = 0  # process index on this machine, which picks its GPU
    owns_process_group: bool = False  # whether train() created the group and must destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str) -> torch.device:
    """Turn a config device (``auto``, ``cpu``, ``mps``, ``cuda``, ``cuda:N``) into a device.

    Raises:
        ValueError: if ``requested`` is not one of those forms, or the requested accelerator is
            not available here.
    """
    from cifarlab.train.config import _DEVICE_PATTERN

    if not isinstance(requested, str) or not _DEVICE_PATTERN.match(requested):
        raise ValueError(f"invalid device={requested!r}: expected auto, cpu, mps, cuda or cuda:N")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"invalid device={requested!r}: CUDA is not available here; use device='cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"invalid device={requested!r}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s), numbered from 0"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"invalid device={requested!r}: MPS is not available here; use device='cpu' or 'auto'")
    return device


def init_distributed(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns the context and the device this process trains on: with CUDA, each process takes
    the GPU of its ``LOCAL_RANK``. Without ``torchrun`` (``WORLD_SIZE`` unset or 1) this is a
    single-process context and the device is returned unchanged.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), device

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "mps":
        raise ValueError(
            "invalid device='mps' for a distributed run: torch.distributed supports only CPU "
            "(gloo) and CUDA (nccl); use --device cpu or launch one process"
        )
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"

    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend=backend)
    context = DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        owns_process_group=owns_group,
    )
    logger.info(
        "joined process group: rank %d of %d, backend %s, device %s",
        context.rank,
        context.world_size,
        backend,
        device,
    )
    return context, device


def shutdown_distributed(context: DistributedContext) -> None:
    if context.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum a tensor over all processes in place (a no-op in a single-process run)."""
    if context.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
