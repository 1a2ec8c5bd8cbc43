"""The optimizer: Adam on its fused kernel, and that kernel's update a few parameters at a time.

    optimizer = make_optimizer(model, lr=1e-3, device=torch.device("cpu"))
    update = LayerAdam(optimizer)     # needs supports_layer_adam(optimizer): fused, default options
    update([weight, bias])            # what optimizer.step() does to these two, and nothing else

Adam is elementwise: the update of one parameter never reads another's gradient, so updating a
layer as soon as its gradients exist (inside the backward pass, while they are still in cache)
gives the weights, moments and step counts `optimizer.step()` would give after the whole backward
pass, bit for bit (tests/test_optim.py). The state lives in `optimizer.state` as Adam keeps
it, so `optimizer.state_dict()`, checkpoints and resume are unchanged. On the seed model's step
(2-core AMD EPYC) the per-layer updates cost 0.4-0.5 ms where the step after the backward pass
cost 0.9 ms plus 0.27 ms for the gradient check (`python benchmarks/step_stages.py`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim import optimizer as torch_optimizer  # for the step hooks of every optimizer

__all__ = ["make_optimizer", "LayerAdam", "supports_layer_adam", "layer_adam"]


def make_optimizer(model: nn.Module, lr: float, device: torch.device,
                   decoder_weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel where available (CPU and CUDA in torch >= 2.4), else foreach.

    `decoder_weight_decay` > 0 puts `model.decoder`'s parameters in a second group with that L2
    weight decay (Adam's, i.e. the gradient of decay/2 * ||theta||^2: an RAE's decoder term).
    """
    params: Any = list(model.parameters())
    if decoder_weight_decay:
        in_decoder = {id(p) for p in model.decoder.parameters()}
        params = [{"params": [p for p in params if id(p) not in in_decoder]},
                  {"params": [p for p in params if id(p) in in_decoder],
                   "weight_decay": decoder_weight_decay}]
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=device.type != "cpu")



def supports_layer_adam(optimizer: torch.optim.Optimizer) -> bool:
    """True for a plain `torch.optim.Adam` on the fused kernel: no amsgrad, maximize, capturable,
    differentiable or decoupled weight decay, a float learning rate, no step hooks (its own or
    global ones: they would never fire), no grad scaler."""
    if type(optimizer) is not torch.optim.Adam or not hasattr(torch, "_fused_adam_"):
        return False
    if (optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
            or getattr(torch_optimizer, "_global_optimizer_pre_hooks", None)
            or getattr(torch_optimizer, "_global_optimizer_post_hooks", None)
            or getattr(optimizer, "grad_scale", None) is not None
            or getattr(optimizer, "found_inf", None) is not None):
        return False
    return all(g.get("fused") and not g.get("amsgrad") and not g.get("maximize")
               and not g.get("capturable") and not g.get("differentiable")
               and not g.get("decoupled_weight_decay") and not torch.is_tensor(g["lr"])
               for g in optimizer.param_groups)


class LayerAdam:
    """`optimizer.step()` for a list of its parameters (each with a gradient)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if not supports_layer_adam(optimizer):
            raise ValueError("LayerAdam needs a torch.optim.Adam with fused=True and default options")
        self.optimizer = optimizer
        self._group = {id(p): g for g in optimizer.param_groups for p in g["params"]}

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameter's Adam state, created as Adam creates it on its first step."""
        state = self.optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def __call__(self, params: list[torch.Tensor]) -> None:
        groups: dict[int, list[torch.Tensor]] = {}
        for p in params:
            groups.setdefault(id(self._group[id(p)]), []).append(p)
        for members in groups.values():
            group = self._group[id(members[0])]
            states = [self._state(p) for p in members]
            steps = [s["step"] for s in states]
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(members, [p.grad for p in members], [s["exp_avg"] for s in states],
                               [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False,
                               lr=group["lr"], beta1=beta1, beta2=beta2,
                               weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                               grad_scale=None, found_inf=None)


def layer_adam(optimizer: torch.optim.Optimizer) -> LayerAdam | None:
    """The layer-by-layer update for `optimizer` where it qualifies (`supports_layer_adam`), else None:
    the one rule for training (`aelab.training`) and for the step `--threads auto` times."""
    return LayerAdam(optimizer) if supports_layer_adam(optimizer) else None
