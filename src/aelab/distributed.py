"""Multi-process training under torchrun: process group, shared BatchNorm statistics, DDP wrapper.

    torchrun --nproc-per-node 2 -m aelab train --device cpu --out runs/ddp

`init_distributed` joins the group torchrun describes (gloo on CPU, nccl on GPU);
`sync_batchnorm` makes BatchNorm use global-batch statistics (torch's SyncBatchNorm on GPU; on
CPU, where torch's SyncBatchNorm does not run, `GlobalBatchNorm`); `wrap_ddp` puts the loss
computation under DistributedDataParallel so gradients are averaged across ranks.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_distributed", "sync_batchnorm", "wrap_ddp", "GlobalBatchNorm"]


class _LossModule(nn.Module):
    """forward(x) = model.loss(x), so DistributedDataParallel sees the loss computation."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.model.loss(x)


def init_distributed(device_name: str) -> tuple[int, int, torch.device | None]:
    """Join the process group torchrun describes; (rank, world size, device or None)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, None
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return dist.get_rank(), world, torch.device("cuda", local)
    return dist.get_rank(), world, torch.device("cpu")


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over ranks; the gradient is summed the same way (as SyncBatchNorm's is)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics span all ranks: SyncBatchNorm for CPU and gloo.

    torch's SyncBatchNorm runs on GPUs only (DistributedDataParallel refuses it on CPU). Here the
    per-feature sums are all-reduced with their gradients, so forward and backward see the
    global batch as single-process training does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        # x: this rank's (n_local, c); mean and biased variance over the global batch of n samples
        sums = _AllReduceSum.apply(torch.cat([x.sum(0), x.new_tensor([float(len(x))])]))
        n = sums[-1]
        mean = sums[:-1] / n
        var = _AllReduceSum.apply((x - mean).pow(2).sum(0)) / n
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Share BatchNorm statistics across ranks: SyncBatchNorm on GPUs, `GlobalBatchNorm` on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is nn.BatchNorm1d:
            module.__class__ = GlobalBatchNorm  # same parameters and buffers, global statistics
    return model



def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel over `model.loss`: calling the result returns (loss, parts)."""
    return nn.parallel.DistributedDataParallel(
        _LossModule(model), device_ids=[device.index] if device.type == "cuda" else None)
