"""The training loop: epochs, steps, validation, checkpoints. No plotting, no file layout.

Fast by construction: the dataset lives once on the target device as uint8; each epoch draws one
permutation and takes batches by indexing, converting to float on the fly; losses accumulate on
the device and are read only at sync points; Adam is fused where the build supports it; on CPU
it trains on the run's thread count (see `cpu_threads` and `aelab.threads`).

Resumable bit for bit: `TrainState` plus the model, optimizer and RNGs are the whole state;
`aelab.checkpoint` captures it into a verified file and puts it back. The lr and a VAE's KL
weight are pure functions of the global step (`aelab.schedules`). An epoch's record holds
`train_<part>` and `valid_<part>` for "loss" and each of `model.loss_parts` (tutorial: mse).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .augment import random_shift
from .checks import all_finite, is_finite
from .config import Config
from .data.images import to_float_images
from .errors import AelabError, DivergedError
from .schedules import StepSchedule

__all__ = ["TrainState", "Interrupted", "PARTS", "part_names", "fit", "evaluate_loss",
           "to_float_batch", "cpu_threads", "batches_per_epoch"]

PARTS = ("loss", "mse")  # the tutorial model's parts; see part_names


def part_names(model: nn.Module) -> tuple[str, ...]:
    """The sums accumulated per epoch (weighted by batch size): "loss", then the model's loss parts."""
    return ("loss", *getattr(model, "loss_parts", ("mse",)))


def batches_per_epoch(n: int, batch: int) -> int:
    """Optimizer steps per epoch over n images; a last batch of 1 is dropped (it breaks BatchNorm)."""
    return n // batch + (1 if n % batch >= 2 else 0)


class Interrupted(AelabError):
    """Training stopped on SIGINT after writing a checkpoint."""


@dataclass
class TrainState:
    """Where training stands. `epoch` counts finished epochs; the rest describe the one in progress."""

    epoch: int = 0
    step: int = 0                       # optimizer steps taken, all epochs
    metrics: list[dict] = field(default_factory=list)
    epoch_step: int = 0                 # batches done in epoch `epoch + 1`
    perm: torch.Tensor | None = None    # that epoch's permutation, (n_train,) int64
    sums: torch.Tensor | None = None    # running sums of part_names and the sample count, float64
    epoch_seconds: float = 0.0          # time already spent in that epoch before a resume


def to_float_batch(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 784) in [0, 1], the tutorial's ToTensor + flatten."""
    return to_float_images(images_u8)


def cpu_threads(cfg: Config | None = None) -> int:
    """Threads for training on CPU: the run's `threads_chosen` (what `--threads N` asked for or
    `--threads auto` measured, see `aelab.threads`), else a number in `threads`, else (a run from
    before aelab chose its threads) $OMP_NUM_THREADS when set, else 1.
    """
    if cfg is not None and cfg.train.threads_chosen is not None:
        return cfg.train.threads_chosen
    if cfg is not None and isinstance(cfg.train.threads, int):
        return cfg.train.threads
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


class _TorchThreads:
    """Sets torch's intra-op thread count for a block and restores it afterwards."""

    def __init__(self, n: int | None) -> None:
        self.n, self._old = n, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self._old)


# --- validation ------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_loss(model: nn.Module, images_u8: torch.Tensor, batch_size: int = 1000,
                  loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict]] | None = None
                  ) -> dict[str, float]:
    """Mean objective and each loss part over a split, in eval mode, on a forked RNG (a VAE at full
    beta); `loss_fn` (default `model.loss`) computes them per batch."""
    was_training = model.training
    model.eval()
    names = part_names(model)
    kl_scale = getattr(model, "kl_scale", None)
    if kl_scale is not None:
        model.kl_scale = 1.0
    sums = torch.zeros(len(names), dtype=torch.float64, device=images_u8.device)
    devices = [images_u8.device.index or 0] if images_u8.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)  # the VAE objective samples z; keep validation repeatable
        for i in range(0, len(images_u8), batch_size):
            x = to_float_batch(images_u8[i:i + batch_size])
            loss, parts = (loss_fn or model.loss)(x)
            sums += torch.stack([loss.detach(), *(parts[k] for k in names[1:])]).double() * len(x)
    model.train(was_training)
    if kl_scale is not None:
        model.kl_scale = kl_scale
    values = (sums / len(images_u8)).tolist()
    return dict(zip(names, values))


# --- the loop --------------------------------------------------------------------------------

class _SigintFlag:
    """Turns Ctrl-C into a flag the loop checks after each step (main thread only)."""

    def __init__(self) -> None:
        self.raised = False
        self._old: Any = None

    def __enter__(self) -> _SigintFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fit(cfg: Config, model: nn.Module, optimizer: torch.optim.Optimizer,
        train_u8: torch.Tensor, valid_u8: torch.Tensor, state: TrainState, data_gen: torch.Generator,
        *, save_checkpoint: Callable[[TrainState], None],
        on_epoch_end: Callable[[dict, TrainState], None] = lambda record, state: None,
        loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict]] | None = None,
        grad_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict]] | None = None,
        step_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict, str | None]] | None = None,
        valid_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict]] | None = None,
        progress: bool = True) -> TrainState:
    """Train from `state` to `cfg.train.epochs`, calling back after each epoch.

    `loss_fn(x) -> (loss, parts)` defaults to `model.loss`; pass a compiled or
    DistributedDataParallel-wrapped version of it instead. `grad_fn(x) -> (loss, parts)`, when
    given, replaces loss_fn + backward: it must leave every parameter's gradient in `.grad`
    (see `aelab.dense_step.DenseStep`). `step_fn(x) -> (loss, parts, found)`, when given, replaces
    the whole step (gradients, the finiteness check, the optimizer's update): `found` names a
    non-finite value it stopped at, else None (`DenseStep.train_step` with `aelab.optim.LayerAdam`);
    `valid_fn(x) -> (loss, parts)`, the validation pass's loss in eval mode (`DenseStep.evaluate`).
    Under torch.distributed each rank
    trains on its share of every global batch of `cfg.train.batch_size`. Raises `DivergedError`
    on a non-finite loss (no checkpoint is written after it) and `Interrupted` on Ctrl-C (after
    one is written).
    """
    tc = cfg.train
    device = train_u8.device
    rank, world = _world()
    n = len(train_u8)
    batch = tc.batch_size
    n_batches = batches_per_epoch(n, batch)
    names = part_names(model)
    schedule = StepSchedule.of(tc, n_batches)
    sync_every = 1 if device.type == "cpu" else 25          # host reads cost nothing on CPU
    loss_fn = loss_fn or model.loss
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")

    def autograd_grads(x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        with autocast:
            loss, parts = loss_fn(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss, parts

    grad_fn = grad_fn or autograd_grads
    last_checkpoint = time.monotonic()

    if state.perm is not None and (len(state.perm) != n or not state.epoch_step < n_batches
                                   or not torch.equal(torch.sort(state.perm).values, torch.arange(n))):
        raise AelabError(f"the checkpoint's epoch in progress covers {len(state.perm)} training images "
                         f"at step {state.epoch_step}; the data here has {n}: not the data it was "
                         f"written for")
    threads = _TorchThreads(cpu_threads(cfg) if device.type == "cpu" else None)
    with threads, _SigintFlag() as sigint:
        while state.epoch < tc.epochs:
            epoch = state.epoch + 1
            if state.epoch_step == 0:
                state.perm = torch.randperm(n, generator=data_gen)
                state.sums = torch.zeros(len(names) + 1, dtype=torch.float64)
            perm = state.perm.to(device)
            sums = state.sums.to(device)
            started = time.perf_counter() - state.epoch_seconds
            model.train()
            bar = tqdm(total=n_batches, initial=state.epoch_step, desc=f"epoch {epoch}/{tc.epochs}",
                       leave=False, disable=not progress or rank != 0, dynamic_ncols=True)
            for b in range(state.epoch_step, n_batches):
                idx = perm[b * batch:(b + 1) * batch]
                idx = idx[rank::world]  # this rank's share of the global batch
                x = to_float_batch(train_u8.index_select(0, idx))  # 10x cheaper than train_u8[idx] on CPU
                x = random_shift(x, tc.augment_shift) if tc.augment_shift else x
                schedule.apply(state.step, optimizer, model)  # resumed, it follows the same curve
                sync = (b + 1) % sync_every == 0 or b + 1 == n_batches or sigint.raised
                if step_fn is not None:  # checks and updates layer by layer
                    loss, parts, found = step_fn(x)
                    if found is not None:
                        raise _diverged(found, epoch, b + 1, tc.lr)
                else:
                    loss, parts = grad_fn(x)
                    if sync:  # before the step touches the weights
                        _stop_if_not_finite(model, loss, epoch, b + 1, tc.lr)
                    optimizer.step()
                # in place and without a host tensor: no host-to-device copy per step on a GPU
                sums[:-1] += torch.stack([loss.detach(), *(parts[k] for k in names[1:])]).double() * len(x)
                sums[-1] += len(x)
                state.step += 1
                state.epoch_step = b + 1
                if sync:
                    bar.update(b + 1 - bar.n)
                    bar.set_postfix(loss=f"{(sums[0] / sums[-1]).item():.4f}", refresh=False)
                    timed_out = time.monotonic() - last_checkpoint > tc.checkpoint_minutes * 60
                    if (sigint.raised or timed_out) and b + 1 < n_batches:
                        state.sums, state.epoch_seconds = sums.cpu(), time.perf_counter() - started
                        save_checkpoint(state)
                        last_checkpoint = time.monotonic()
                    if sigint.raised and b + 1 < n_batches:
                        bar.close()
                        raise Interrupted(f"interrupted in epoch {epoch} at step {b + 1}; "
                                          f"checkpoint saved")
            bar.close()
            if world > 1:
                dist.all_reduce(sums)
            if not all(is_finite(p) for p in model.parameters()):
                raise DivergedError(f"weights became non-finite in epoch {epoch}; training stopped, "
                                    f"the last good checkpoint is kept; try a lower --lr (now {tc.lr:g})")
            valid = evaluate_loss(model, valid_u8, loss_fn=valid_fn)
            train_sums = sums.tolist()
            record = {"epoch": epoch, **{f"train_{k}": v / train_sums[-1] for k, v in zip(names, train_sums)},
                      **{f"valid_{k}": v for k, v in valid.items()},
                      "seconds": round(time.perf_counter() - started, 4),
                      "steps": state.step, "lr": optimizer.param_groups[0]["lr"]}
            if schedule.kl_warmup:
                record["kl_weight"] = model.kl_scale
            state.epoch, state.epoch_step, state.perm, state.sums = epoch, 0, None, None
            state.epoch_seconds = 0.0
            state.metrics.append(record)
            on_epoch_end(record, state)
            save_checkpoint(state)
            last_checkpoint = time.monotonic()
            if sigint.raised and state.epoch < tc.epochs:
                raise Interrupted(f"interrupted after epoch {epoch}; checkpoint saved")
    return state


def _stop_if_not_finite(model: nn.Module, loss: torch.Tensor, epoch: int, step: int, lr: float) -> None:
    """Raise `DivergedError` if the loss or any gradient is NaN or infinite (`checks.all_finite`)."""
    value = loss.item()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not math.isfinite(value):
        raise _diverged(f"loss became {value}", epoch, step, lr)
    if not all_finite(grads):
        raise _diverged("a gradient became non-finite", epoch, step, lr)


def _diverged(what: str, epoch: int, step: int, lr: float) -> DivergedError:
    return DivergedError(f"{what} at epoch {epoch}, step {step}; training stopped, the last good "
                         f"checkpoint is kept; try a lower --lr (now {lr:g})")
