"""Crash-safe, pickle-free checkpoints of the full training state: capture, file, restore.

One safetensors file holds every tensor (model weights, optimizer moments, RNG states, the
current epoch's permutation and loss sums); its metadata holds the rest as JSON plus a SHA-256
over all tensor bytes and that JSON, so a truncated or tampered file is refused before any of
it is used. Nothing here can execute code from a file.

Writes are atomic: temp file in the same folder, fsync, rename, fsync the folder. The previous
checkpoint stays in place until the new one is complete, and a checkpoint holding a NaN or an
infinity is never written.

    tensors, meta = capture_state(model, optimizer, state, data_gen)
    save_checkpoint("runs/demo/checkpoint.safetensors", tensors, meta)
    tensors, meta = load_checkpoint("runs/demo/checkpoint.safetensors")
    state = restore_state(tensors, meta, model, optimizer, data_gen)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from .checks import is_finite
from .engine import TrainState, part_names
from .errors import AelabError, DivergedError, RunError
from .files import atomic_write_bytes, check_regular_file
from .records import check_metrics, is_number

__all__ = ["capture_state", "restore_state", "model_state", "save_checkpoint", "load_checkpoint",
           "tensors_digest", "describe_mismatch", "FORMAT"]

FORMAT = "aelab-checkpoint-2"
MAX_CHECKPOINT_BYTES = 4 << 30  # 2: the digest also covers the JSON state


def tensors_digest(tensors: dict[str, torch.Tensor], state_json: str = "") -> str:
    """SHA-256 over names, dtypes, shapes and bytes of all tensors (sorted by name), then `state_json`."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(f"state|{state_json}".encode())
    return h.hexdigest()


def _where(state: dict[str, Any]) -> str:
    """'epoch E, step S' from the engine's state (epoch counts finished epochs), else ''."""
    try:
        epoch, epoch_step = int(state["epoch"]), int(state["epoch_step"])
    except (KeyError, TypeError, ValueError):
        return ""
    return f" at epoch {epoch + 1}, step {epoch_step}" if epoch_step else f" after epoch {epoch}"


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Atomically write tensors plus a JSON-able `state` dict to `path`.

    Raises `DivergedError` (and writes nothing) when a floating tensor holds NaN or infinity,
    `RunError` when the disk refuses the write; either way the previous checkpoint is kept.
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            lr = next(iter(state.get("param_groups") or [{}]), {}).get("lr")
            hint = f" (now {lr:g})" if isinstance(lr, (int, float)) else ""
            raise DivergedError(f"{name} became non-finite{_where(state)}; training stopped and "
                                f"the last good checkpoint is kept; try a lower --lr{hint}")
    state_json = json.dumps(state)
    metadata = {"format": FORMAT, "state": state_json, "sha256": tensors_digest(tensors, state_json)}
    try:
        atomic_write_bytes(path, save(tensors, metadata=metadata))
    except RunError as e:
        raise RunError(f"{e}; the previous checkpoint is unchanged") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; any defect raises `RunError` naming the file.

    Whatever the bytes, only `RunError` escapes: the file is memory-mapped and safetensors checks
    every offset against its length, so a lying header cannot make this allocate more than the
    file holds.
    """
    path = Path(path)
    check_regular_file(path, path.parent, MAX_CHECKPOINT_BYTES, f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except OSError as e:
        raise RunError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    except Exception as e:  # safetensors raises several types for malformed headers
        raise RunError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
    if metadata.get("format") != FORMAT:
        raise RunError(f"{path} is not an aelab checkpoint of format {FORMAT} "
                       f"(format {metadata.get('format')!r})")
    state_json = metadata.get("state", "")
    try:
        digest = tensors_digest(tensors, state_json)
    except (RuntimeError, TypeError, ValueError):  # a dtype torch cannot view as bytes
        raise RunError(f"checkpoint {path} holds tensors aelab never writes") from None
    if digest != metadata.get("sha256"):
        raise RunError(f"checkpoint {path} failed its checksum: the file was modified or damaged")
    try:
        state = json.loads(state_json)
    except (ValueError, RecursionError):
        raise RunError(f"checkpoint {path} has no readable state") from None
    if not isinstance(state, dict):
        raise RunError(f"checkpoint {path} has no readable state")
    return tensors, state


def describe_mismatch(error: Exception) -> str:
    """The first specific line of a `load_state_dict` error, e.g. 'size mismatch for encoder.0.0.weight:
    ... torch.Size([6, 784]) from checkpoint, the shape in current model is torch.Size([8, 784])'."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith("Error(s) in loading state_dict")]
    return ((specific or lines or [type(error).__name__])[0])[:300]


# --- state capture for checkpoints --------------------------------------------------------------

def capture_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
                  data_gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything needed to continue exactly: tensors for safetensors and a JSON-able dict."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for i, s in opt["state"].items():
        for k, v in s.items():
            tensors[f"optim.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = data_gen.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    if state.perm is not None:
        tensors["epoch.perm"] = state.perm
        tensors["epoch.sums"] = state.sums
    meta = {"epoch": state.epoch, "step": state.step, "epoch_step": state.epoch_step,
            "epoch_seconds": state.epoch_seconds, "metrics": state.metrics,
            "param_groups": opt["param_groups"]}
    return tensors, meta


def restore_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], model: nn.Module,
                  optimizer: torch.optim.Optimizer, data_gen: torch.Generator) -> TrainState:
    """Inverse of `capture_state`; raises `AelabError` when the checkpoint does not fit the model."""
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = v
        bad = next((k for k, v in tensors.items() if v.is_floating_point() and not is_finite(v)), None)
        if bad is not None:
            raise ValueError(f"{bad} holds NaN or infinity")
        groups = _checked_param_groups(meta["param_groups"], optimizer)
        _check_adam_state(opt_state, optimizer, _count(meta, "step"))
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        torch.set_rng_state(tensors["rng.torch"])
        data_gen.set_state(tensors["rng.data"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        state = TrainState(epoch=_count(meta, "epoch"), step=_count(meta, "step"),
                           metrics=list(meta["metrics"]), epoch_step=_count(meta, "epoch_step"),
                           epoch_seconds=float(meta["epoch_seconds"]))
        # the checksum proves the file is whole, not that its author was honest: check the state
        check_metrics(state.metrics, "the checkpoint's metrics")
        epochs = [m.get("epoch") if isinstance(m, dict) else None for m in state.metrics]
        if epochs != list(range(1, len(epochs) + 1)) or state.epoch != len(epochs):
            raise ValueError(f"epoch {state.epoch} does not match its {len(epochs)} metrics records")
        if state.step < 0 or state.epoch_step < 0:
            raise ValueError("negative step")
        if state.epoch_step:
            perm, sums = tensors["epoch.perm"], tensors["epoch.sums"]
            n_sums = len(part_names(model)) + 1
            if perm.dtype != torch.int64 or perm.dim() != 1 or tuple(sums.shape) != (n_sums,):
                raise ValueError("the epoch's permutation or loss sums have the wrong shape")
            state.perm, state.sums = perm, sums.double()
    except (KeyError, ValueError, TypeError, RuntimeError, RunError) as e:
        raise AelabError(f"checkpoint does not fit this model and optimizer "
                         f"({describe_mismatch(e)})") from None
    return state


def _check_adam_state(opt_state: dict[int, dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
                      steps: int) -> None:
    """Adam's saved moments, as Adam would have left them: one entry per parameter at most, each
    with a step count (a whole number from 0 to the run's optimizer steps) and moments of the
    parameter's shape, the second one >= 0. Adam's own loader checks none of this, and its fused
    kernel reads a moment of the wrong size past its end."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    amsgrad = any(g.get("amsgrad") for g in optimizer.param_groups)
    names = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
    for i, entry in opt_state.items():
        if not 0 <= i < len(params):
            raise ValueError(f"optimizer state for parameter {i}; the model has {len(params)}")
        if set(entry) != names:
            raise ValueError(f"optimizer state {i} holds {sorted(entry)}, not {sorted(names)}")
        step = entry["step"]
        if step.dim() != 0 or not 0 <= float(step) <= steps or float(step) != int(float(step)):
            raise ValueError(f"optimizer state {i}: step {step.tolist()} is not a whole number "
                             f"from 0 to the run's {steps} steps")
        for name in sorted(names - {"step"}):
            moment = entry[name]
            if not moment.is_floating_point() or moment.shape != params[i].shape:
                raise ValueError(f"optimizer state {i}: {name} of shape {tuple(moment.shape)} and dtype "
                                 f"{moment.dtype}, for a parameter of shape {tuple(params[i].shape)}")
            if name != "exp_avg" and bool((moment < 0).any()):
                raise ValueError(f"optimizer state {i}: {name} is negative")


def _count(meta: dict[str, Any], key: str) -> int:
    """A whole number of the checkpoint's state (epoch, step, epoch_step), not a float or a bool."""
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} {value!r:.40} is not a whole number")
    return value


HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay")  # what a checkpoint restores of a group


def _checked_param_groups(groups: Any, optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The groups to load: the live optimizer's, with the saved hyperparameters (numbers where
    numbers belong).

    The saved groups must list the live groups' parameters in the same order: Adam's loader maps
    each saved moment to a parameter through those lists, and a permuted list would hand a weight
    the moment of a bias (its fused kernel then reads past that moment's end). Flags (amsgrad,
    maximize, fused, ...) come from the live optimizer, which the run's config built, never from
    the file: a saved `maximize` would train the loss up.
    """
    live = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError("the optimizer's param_groups are not a list of objects")
    if len(groups) != len(live) or any(g.get("params") != w["params"] for g, w in zip(groups, live)):
        raise ValueError(f"the optimizer's param_groups list other parameters than this model's "
                         f"{sum(len(w['params']) for w in live)} in {len(live)} group(s)")
    for g in groups:
        betas = g.get("betas")
        if not all(is_number(g.get(k)) for k in ("lr", "eps", "weight_decay")) or not (
                isinstance(betas, list) and len(betas) == 2 and all(is_number(b) for b in betas)):
            raise ValueError("the optimizer's lr, eps, betas or weight_decay are not numbers")
    return [{**w, **{k: g[k] for k in HYPERPARAMETERS}} for g, w in zip(groups, live)]


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint's tensors."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
