"""Crash-safe, pickle-free checkpoints of the full training state.

One safetensors file holds every tensor (model weights, optimizer moments, RNG states, the
current epoch's permutation and loss sums); its metadata holds the rest as JSON plus a SHA-256
over all tensor bytes and that JSON, so a truncated or tampered file is refused before any of
it is used. Nothing here can execute code from a file.

Writes are atomic: temp file in the same folder, fsync, rename, fsync the folder. The previous
checkpoint stays in place until the new one is complete, and a checkpoint holding a NaN or an
infinity is never written.

    save_checkpoint("runs/demo/checkpoint.safetensors", {"model.w": w}, {"epoch": 3})
    tensors, state = load_checkpoint("runs/demo/checkpoint.safetensors")
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from .errors import DivergedError, RunError

__all__ = ["atomic_write_bytes", "save_checkpoint", "load_checkpoint", "tensors_digest",
           "describe_mismatch"]

FORMAT = "aelab-checkpoint-2"  # 2: the digest also covers the JSON state


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder refuses even this; nothing was written there either
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic


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
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
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
