"""Learning-rate schedules and the KL warm-up: pure functions of the global optimizer step.

    factor = lr_factor("cosine", step=500, total=1880, warmup=94)   # lr = base lr * factor
    weight = kl_weight(step=500, warmup=940)                        # beta = beta * weight
    StepSchedule.of(cfg.train, n_batches).apply(step, optimizer, model)   # what the engine calls

The engine sets every parameter group's lr from `lr_factor` before each optimizer step, so a
resumed run (which knows its step) continues on exactly the curve one straight run follows.
`total` is the run's planned steps (`epochs * batches per epoch`): extending a finished run
with `--epochs N` stretches cosine and onecycle over the new length from that point on.

    constant   1 after the warm-up (the tutorial's: no warm-up, lr fixed)
    cosine     linear warm-up from 0, then half a cosine from 1 down to 0 at the last step
    onecycle   Smith's 1cycle as in torch's OneCycleLR: a cosine rise from 1/25 to 1 over the
               warm-up (default 30% of the steps), then a cosine fall to 1/25e4
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .registry import Registry

__all__ = ["SCHEDULES", "lr_factor", "kl_weight", "StepSchedule"]

SCHEDULES: Registry[Callable[[int, int, int], float]] = Registry("schedule")

ONECYCLE_RISE = 0.3         # torch's pct_start: the rise's share of the steps, without --warmup-epochs
ONECYCLE_START = 1 / 25     # torch's 1 / div_factor
ONECYCLE_END = 1 / 25e4     # torch's 1 / (div_factor * final_div_factor)


def _cosine(t: float, start: float, end: float) -> float:
    """From `start` at t = 0 to `end` at t = 1 along half a cosine."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def _linear_warmup(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


@SCHEDULES.register("constant", "the base lr throughout (after a linear --warmup-epochs)")
def constant(step: int, total: int, warmup: int) -> float:
    return _linear_warmup(step, warmup)


@SCHEDULES.register("cosine", "linear --warmup-epochs, then a cosine decay to 0 at the last step")
def cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return _linear_warmup(step, warmup)
    return _cosine((step - warmup) / max(total - warmup, 1), 1.0, 0.0)


@SCHEDULES.register("onecycle", "1cycle: cosine rise from lr/25 over --warmup-epochs (default 3/10 "
                    "of the steps), cosine fall to lr/25e4")
def onecycle(step: int, total: int, warmup: int) -> float:
    rise = warmup if warmup > 0 else max(1, round(ONECYCLE_RISE * total))
    if step < rise:
        return _cosine(step / rise, ONECYCLE_START, 1.0)
    return _cosine((step - rise) / max(total - rise, 1), 1.0, ONECYCLE_END)


def lr_factor(name: str, step: int, total: int, warmup: int) -> float:
    """The lr of 0-based optimizer step `step` as a multiple of the base lr."""
    return SCHEDULES.get(name)(step, total, warmup)


def kl_weight(step: int, warmup: int) -> float:
    """The KL term's weight (a multiple of beta) at step `step`: linear from 0 to 1 over `warmup` steps."""
    return min(1.0, step / warmup) if warmup > 0 else 1.0


@dataclass(frozen=True)
class StepSchedule:
    """The lr and KL weight of every step of one run, in steps; `apply` sets them before a step."""

    name: str
    lr: float
    total: int
    warmup: int
    kl_warmup: int

    @classmethod
    def of(cls, tc: Any, n_batches: int) -> StepSchedule:
        """From a TrainConfig and the steps per epoch."""
        return cls(tc.schedule, tc.lr, tc.epochs * n_batches, round(tc.warmup_epochs * n_batches),
                   round(tc.kl_warmup_epochs * n_batches))

    def apply(self, step: int, optimizer: Any, model: Any) -> None:
        """Set every parameter group's lr and the model's `kl_scale` for 0-based step `step`.

        The tutorial's constant lr without warm-up is left untouched (it is the optimizer's own).
        """
        if self.kl_warmup:
            model.kl_scale = kl_weight(step, self.kl_warmup)
        if self.name != "constant" or self.warmup:
            lr = self.lr * lr_factor(self.name, step, self.total, self.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
