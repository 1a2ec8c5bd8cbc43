"""Safe writes: every file aelab writes goes through `atomic_write_bytes`.

A crash, a kill or a full disk leaves either the old file or the new one under the real name,
never half of one: the bytes go to a hidden temp file in the same folder, are fsynced, and
only then renamed over the target (and the folder is fsynced). A disk that refuses the write
is one `RunError` line naming the file; the temp file is removed.

    atomic_write_bytes("runs/a/model.safetensors", data)
    write_json("runs/a/evaluation.json", {"mse": 0.01})
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from .errors import RunError

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_json", "figure_png_bytes"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
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


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, **dumps: Any) -> None:
    """Atomically write `obj` as indented JSON plus a final newline."""
    atomic_write_text(path, json.dumps(obj, indent=2, **dumps) + "\n")


def figure_png_bytes(fig: Any, dpi: int) -> bytes:
    """A matplotlib Figure as PNG bytes, with no "Software" metadata (same figure, same bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png", metadata={"Software": None})
    return buffer.getvalue()
