"""Crash-safe, pickle-free checkpoints of the full training state.

One safetensors file holds every tensor (model weights, optimizer moments, RNG states, the
current epoch's permutation and loss sums); its metadata holds the rest as JSON plus a SHA-256
of all tensor bytes, so a truncated or tampered file is refused before any of it is used.
Nothing here can execute code from a file.

Writes are atomic: temp file in the same folder, fsync, rename, fsync the folder. The previous
checkpoint stays in place until the new one is complete.
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

from .errors import RunError

__all__ = ["atomic_write_bytes", "save_checkpoint", "load_checkpoint", "tensors_digest"]

FORMAT = "aelab-checkpoint-1"


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
        tmp.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of all tensors, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Atomically write tensors plus a JSON-able `state` dict to `path`."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "state": json.dumps(state), "sha256": tensors_digest(tensors)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; any defect raises `RunError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for malformed headers
        raise RunError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
    if metadata.get("format") != FORMAT:
        raise RunError(f"{path} is not an aelab checkpoint (format {metadata.get('format')!r})")
    if tensors_digest(tensors) != metadata.get("sha256"):
        raise RunError(f"checkpoint {path} failed its checksum: the file was modified or damaged")
    try:
        state = json.loads(metadata["state"])
    except (KeyError, ValueError):
        raise RunError(f"checkpoint {path} has no readable state") from None
    if not isinstance(state, dict):
        raise RunError(f"checkpoint {path} has no readable state")
    return tensors, state
