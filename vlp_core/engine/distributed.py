"""One run over several processes: the process group torchrun starts, and the few collectives the
trainer needs.

`torchrun --nproc_per_node N -m vlp_core train ...` starts N processes with RANK, LOCAL_RANK and
WORLD_SIZE in their environment; `start` joins them (NCCL on CUDA, one GPU per process; gloo on the
CPU). Without torchrun (or with one process) there is no process group and everything here answers
for a single process without communicating.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str | None) -> str:
    """Join torchrun's process group -> the device of this process: CUDA device LOCAL_RANK when
    CUDA is asked for (or available and nothing is asked for), else the CPU."""
    local_rank = int(os.environ["LOCAL_RANK"])
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"under torchrun every process takes CUDA device LOCAL_RANK: pass --device cuda or "
                         f"--device cpu, not {device!r} (limit the GPUs with CUDA_VISIBLE_DEVICES)")
    use_cuda = device == "cuda" or (device is None and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {local_rank} on this node has no GPU ({torch.cuda.device_count()} visible): "
                             f"start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{local_rank}" if use_cuda else "cpu"


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes checkpoints, logs and results (rank 0, or the only process)."""
    return rank() == 0


class _MethodLoss(nn.Module):
    """A method's loss as a module's forward, for DistributedDataParallel: its parameters are exactly
    the method's learned tensors (the frozen CLIP is not a submodule)."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return self.method.loss(images, labels)


def loss_function(method: nn.Module):
    """`method.loss`, or in a distributed run the same loss through DistributedDataParallel, which
    averages the learned tensors' gradients over the processes in backward."""
    if world_size() == 1:
        return method.loss
    device = method.device
    empty = any(p.numel() == 0 for p in method.parameters() if p.requires_grad)  # e.g. IVLP's deep prompts at depth 1
    return DistributedDataParallel(_MethodLoss(method), device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=empty)


def global_values(terms: dict[str, Tensor], share: float) -> Tensor:
    """The loss terms of the whole global batch -> (T,) float64: Σ over processes of share × this
    process's term (each term a mean over its images, `share` its part of the batch), in the
    order of `terms`."""
    values = torch.stack([value.detach().double() for value in terms.values()]) * share
    if world_size() > 1:
        dist.all_reduce(values)
    return values


def share_from_main(constants: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """The main process's `constants` on every process (on `device`); the others pass {}."""
    if world_size() == 1:
        return constants
    box = [{name: value.cpu() for name, value in constants.items()} if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return {name: value.to(device) for name, value in box[0].items()}
