"""The dense autoencoder's training step written out by hand: forward, MSE, backward.

Autograd on this small model spends a third of a CPU step outside the matrix products: graph
bookkeeping, a fresh allocation (and page faults) for every activation and gradient, and weight
gradients computed in the transposed layout and then copied. `DenseStep` does the same
arithmetic with the same ATen kernels (`addmm`, `native_batch_norm`, `threshold_backward`,
`native_batch_norm_backward`, `mm`) into buffers allocated once per batch size, and writes
each weight gradient straight into `param.grad` in the weight's own layout. The matrix products
come from a backend of `aelab.matmul` (`torch`: addmm/mm into those buffers; `onednn`: oneDNN's
inner product, twice as fast on AMD CPUs, into fresh tensors).

    step = DenseStep(model)       # model: aelab.models.Autoencoder with relu/none output
    loss, parts = step(x)         # x (n, 784) float; fills p.grad of every parameter
    optimizer.step()
    DenseStep(model, matmul="onednn")
    loss, parts, found = step.train_step(x, LayerAdam(optimizer))   # what aelab.engine.fit runs:
                                  # each layer checked and updated as soon as its gradients exist

The result equals `model.loss(x)` followed by `loss.backward()` up to float rounding (tested in
tests/test_dense_step.py), including BatchNorm's running statistics and batch counter.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .checks import all_finite
from .matmul import MATMULS
from .models.dense import Autoencoder

__all__ = ["DenseStep", "supports"]

_aten = torch.ops.aten


def _blocks(model: nn.Module) -> list[nn.Sequential]:
    return [*model.encoder, *model.decoder]


def supports(model: nn.Module) -> bool:
    """True for an `Autoencoder` made of Linear + BatchNorm1d + (ReLU or nothing) blocks, trained on
    MSE alone (no code penalty), without hooks.

    A subclass may change the loss, and a module hook would never fire here: both train through
    autograd instead.
    """
    if type(model) is not Autoencoder or model.code_penalty:
        return False
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
            return False
    if any(getattr(p, "_backward_hooks", None) for p in model.parameters()):
        return False
    for block in _blocks(model):
        if not (len(block) == 3 and type(block[0]) is nn.Linear and block[0].bias is not None
                and type(block[1]) is nn.BatchNorm1d and block[1].affine
                and block[1].track_running_stats and block[1].momentum is not None
                and type(block[2]) in (nn.ReLU, nn.Identity)):
            return False
    return True


class DenseStep:
    """Loss and gradients of `Autoencoder.loss(x)` for one batch, without autograd."""

    def __init__(self, model: nn.Module, matmul: str = "torch") -> None:
        if not supports(model):
            raise ValueError("DenseStep needs an Autoencoder of Linear + BatchNorm1d + ReLU/none blocks")
        self.model, self.products = model, MATMULS.get(matmul)
        self.layers = [(b[0], b[1], type(b[2]) is nn.ReLU) for b in _blocks(model)]
        self.params = [[lin.weight, lin.bias, bn.weight, bn.bias] for lin, bn, _ in self.layers]
        self._buffers: dict[int, tuple[list[dict[str, torch.Tensor]], torch.Tensor]] = {}

    def _buffers_for(self, x: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """Per layer: pre-norm z, activation y, batch mean/invstd, and the gradient buffers it needs
        (dy behind a ReLU, dx above the first layer); plus x_hat - x."""
        n = len(x)
        if n not in self._buffers:
            def new(*shape: int) -> torch.Tensor:
                return torch.empty(*shape, dtype=x.dtype, device=x.device)
            layers = [{"z": new(n, lin.out_features), "y": new(n, lin.out_features),
                       "mean": new(lin.out_features), "invstd": new(lin.out_features),
                       "dy": new(n, lin.out_features) if relu else None,
                       "dx": new(n, lin.in_features) if k > 0 else None}
                      for k, (lin, _, relu) in enumerate(self.layers)]
            self._buffers[n] = (layers, new(*x.shape))
        return self._buffers[n]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mse, _ = self._run(x, None)
        return mse, {"mse": mse}

    @torch.no_grad()
    def train_step(self, x: torch.Tensor,
                   update: Callable[[list[torch.Tensor]], None]) -> tuple[torch.Tensor, dict, str | None]:
        """A whole training step with each layer updated as soon as its gradients exist.

        `update(params)` (an `aelab.optim.LayerAdam`) runs on a layer's four parameters right
        after its input gradient, the last product that needs the old weight, while the layer's
        gradients are still in cache. The loss is checked before the backward pass and each
        layer's gradients before its update: on a NaN or an infinity the step stops there and
        returns what it found ("loss became nan", "a gradient became non-finite") as its third
        value, else None. Layers nearer the input than the bad one are then untouched; those
        nearer the output were already updated, so the model is not the previous step's
        (training stops on it, and checkpoints are written only between steps).
        """
        mse, bad = self._run(x, update)
        return mse, {"mse": mse}, bad

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`model.loss(x)` in eval mode (BatchNorm on its running statistics) through this step's
        products: the validation pass of a run trained on them (with oneDNN, 0.08 against 0.17 s
        for 10,000 images on two AMD EPYC cores; the same MSE to 7 digits)."""
        x = torch.flatten(x, start_dim=1)
        a = x
        for lin, bn, relu in self.layers:
            a = self.products.linear(a, lin.weight, lin.bias)
            a = torch.batch_norm(a, bn.weight, bn.bias, bn.running_mean, bn.running_var, False, 0.0,
                                 bn.eps, False)
            if relu:
                a = a.relu_()
        mse = torch.nn.functional.mse_loss(a, x)
        return mse, {"mse": mse}

    def _run(self, x: torch.Tensor, update: Callable[[list[torch.Tensor]], None] | None
             ) -> tuple[torch.Tensor, str | None]:
        x, bufs, diff = self.prepare(x)
        inputs, a = [], x
        for k, ((lin, _, _), b) in enumerate(zip(self.layers, bufs)):
            inputs.append(a)
            b["z"] = self.products.linear(a, lin.weight, lin.bias, out=b["z"])
            a = self.normalize(k, b)
        mse, grad = self.mse_and_grad(a, x, diff)
        if update is not None and not math.isfinite(value := mse.item()):
            return mse, f"loss became {value}"
        for k in range(len(self.layers) - 1, -1, -1):
            lin, b = self.layers[k][0], bufs[k]
            dz = self.normalize_backward(k, b, grad)
            self.weight_grads(lin, dz, inputs[k])
            if k > 0:
                grad = self.products.grad_input(dz, lin.weight, out=b["dx"])
            if update is not None:
                if not all_finite([p.grad for p in self.params[k]]):
                    return mse, "a gradient became non-finite"
                update(self.params[k])
        return mse, None

    # The parts of __call__, also used by benchmarks/overlap_step.py to schedule them differently
    # and by benchmarks/step_stages.py to time them

    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor]:
        """x flattened, the buffers for its batch size, x_hat - x's buffer; every .grad allocated."""
        x = torch.flatten(x, start_dim=1)
        bufs, diff = self._buffers_for(x)
        for p in self.model.parameters():
            if p.grad is None:
                p.grad = torch.empty_like(p)
        return x, bufs, diff

    def normalize(self, k: int, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Layer k's BatchNorm (training mode, running statistics updated) and ReLU: z into y."""
        _, bn, relu = self.layers[k]
        _aten.native_batch_norm.out(b["z"], bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                    True, bn.momentum, bn.eps,
                                    out=b["y"], save_mean=b["mean"], save_invstd=b["invstd"])
        bn.num_batches_tracked.add_(1)
        if relu:
            b["y"].relu_()
        return b["y"]

    @staticmethod
    def mse_and_grad(x_hat: torch.Tensor, x: torch.Tensor,
                     diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MSE = mean((x_hat - x)^2) and its gradient 2 (x_hat - x) / numel, written into diff."""
        torch.sub(x_hat, x, out=diff)
        mse = torch.dot(diff.view(-1), diff.view(-1)) / diff.numel()
        return mse, diff.mul_(2.0 / diff.numel())

    def normalize_backward(self, k: int, b: dict[str, torch.Tensor], grad: torch.Tensor) -> torch.Tensor:
        """The gradient at layer k's z from the one at its y; fills its BatchNorm's weight/bias grads."""
        _, bn, relu = self.layers[k]
        if relu:  # the mask comes from the ReLU's own output: y > 0 exactly where z_bn > 0
            grad = _aten.threshold_backward.grad_input(grad, b["y"], 0, grad_input=b["dy"])
        # (the .out overload of this one computes, then copies: the plain call is faster)
        dz, bn.weight.grad, bn.bias.grad = _aten.native_batch_norm_backward(
            grad, b["z"], bn.weight, bn.running_mean, bn.running_var, b["mean"], b["invstd"],
            True, bn.eps, [True, True, True])
        return dz

    def weight_grads(self, lin: nn.Linear, dz: torch.Tensor, inputs: torch.Tensor) -> None:
        """The Linear layer's bias and weight gradients, into its .grad tensors."""
        torch.sum(dz, dim=0, out=lin.bias.grad)
        lin.weight.grad = self.products.grad_weight(dz, inputs, out=lin.weight.grad)
