"""Process group set-up for `torchrun` (NCCL on GPUs, gloo on CPU), and the one SyncBatchNorm of the original."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

# Rank 0 validates while the others wait at a barrier; the default timeout (10 min) is too short for that.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)
# The original hard-codes SyncBN here; every other BN is per GPU (docs/design.md#quirk-one-syncbatchnorm).
SYNC_BN_MODULE = "decode_head.linear_fuse.bn"


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # this process initialised the group, so it also destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _environment_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    try:
        return default if text is None else int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer (set by torchrun)") from None


def init_distributed(device: str | None = None) -> Context:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group when there are several ranks.

    `device`: "cpu", "cuda" (this rank's GPU `cuda:LOCAL_RANK`) or None for a GPU when one is available.
    """
    world_size = _environment_int("WORLD_SIZE", 1)
    rank = _environment_int("RANK", 0)
    local_rank = _environment_int("LOCAL_RANK", 0)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda asked for, but torch sees no GPU; use --device cpu")
        device = f"cuda:{local_rank}"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
        owns_group = True
    return Context(rank, world_size, local_rank, device, owns_group)


def close_distributed(context: Context) -> None:
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def all_gather(context: Context, value: object) -> list[object]:
    """Every rank's `value`, in rank order (picklable objects)."""
    if not context.distributed:
        return [value]
    gathered: list[object] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def from_main(context: Context, value: object) -> object:
    """Rank 0's `value` on every rank."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(context: Context, value: float) -> float:
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.item() / context.world_size


def sync_linear_fuse_bn(model: nn.Module) -> nn.Module:
    """Replace only `decode_head.linear_fuse.bn` by a SyncBatchNorm (same parameters and buffers, same state-dict
    keys); the HFAN-block BatchNorms stay per-GPU as in the original."""
    fuse = model.get_submodule(SYNC_BN_MODULE.rsplit(".", 1)[0])
    fuse.bn = nn.SyncBatchNorm.convert_sync_batchnorm(fuse.bn)
    return model


def wants_sync_bn(context: Context) -> bool:
    # torch's SyncBatchNorm only runs on accelerators; gloo-on-CPU runs (tests) keep the per-process BN.
    return context.distributed and context.device.type == "cuda"
