"""Safe file access: every write goes through `atomic_write_bytes`, every read of a file aelab
wrote earlier through `read_inside` (no symlinks, no special files, bounded size).

A crash, a kill or a full disk leaves either the old file or the new one under the real name,
never half of one: the bytes go to a hidden temp file in the same folder, are fsynced, and
only then renamed over the target (and the folder is fsynced). A disk that refuses the write
is one `RunError` line naming the file; the temp file is removed.

Inside a run folder (the outermost folder above the file holding `.aelab-run`, or `config.json`
beside weights or a checkpoint) writes go through real folders only: a subfolder such as
`figures/` or `explain/` that is a symlink, or not a folder, is refused (`writable_dir`), so a
damaged or hostile run cannot make aelab write outside it. The run folder itself may be a
symlink, and so may any folder above it: that is the user's choice of path.

    atomic_write_bytes("runs/a/model.safetensors", data)
    write_json("runs/a/evaluation.json", {"mse": 0.01})
    out = writable_dir("runs/a/explain")    # created if missing; RunError if a symlink
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import AelabError, RunError

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_json", "figure_png_bytes", "read_inside",
           "check_inside", "check_regular_file", "is_file_inside", "parse_json", "user_path",
           "writable_dir", "RUN_MARKERS"]

# a run folder holds the first, or (written before it existed, or with it deleted) the config beside
# weights or a checkpoint: a project folder's own config.json does not make it one
RUN_MARKERS = (".aelab-run", ("config.json", "model.safetensors"), ("config.json", "checkpoint.safetensors"))


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _run_root(directory: Path) -> Path | None:
    """The outermost folder at or above `directory` (as written, symlinks not resolved) that is a
    run folder by `RUN_MARKERS`, or None.

    Outermost, not nearest: a run's `figures/` symlinked to another run folder shows that folder's
    markers, and taken as the root it would hide the symlink it is.
    """
    root = None
    for folder in (directory, *directory.parents):
        for marker in RUN_MARKERS:
            if all(_is_regular(folder / name) for name in ((marker,) if isinstance(marker, str) else marker)):
                root = folder
    return root


def _walk_below(root: Path, rel: Path) -> Iterator[tuple[Path, os.stat_result | None]]:
    """Each path from `root` down to `root / rel`, one part at a time, with its lstat (symlinks
    not followed), or None where it does not exist (each read after the caller saw the one above)."""
    current = root
    for part in rel.parts:
        current = current / part
        try:
            st: os.stat_result | None = os.lstat(current)
        except FileNotFoundError:
            st = None
        yield current, st


def writable_dir(directory: str | Path) -> Path:
    """`directory`, created if missing; below a run folder, every part of it must be a real folder
    (not a symlink, not a file), else one `RunError` naming the part."""
    directory = Path(directory).absolute()
    root = _run_root(directory)
    try:
        if root is None:
            blocker = next((p for p in (directory, *directory.parents)
                            if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                raise RunError(f"{blocker} is not a folder")
            directory.mkdir(parents=True, exist_ok=True)
            return directory
        for current, st in _walk_below(root, directory.relative_to(root)):
            if st is None:
                current.mkdir()
            elif stat.S_ISLNK(st.st_mode):
                raise RunError(f"{current} is a symlink; aelab writes only into real folders inside "
                               f"the run folder {root}")
            elif not stat.S_ISDIR(st.st_mode):
                raise RunError(f"{current} is not a folder")
    except OSError as e:
        raise RunError(f"cannot create {directory}: {e.strerror or e}") from None
    return directory


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writable_dir(path.parent)
    except RunError as e:
        raise RunError(f"cannot write {path}: {e}") from None
    try:
        # whatever holds the temp name (a torn write, or a planted hard link, FIFO or symlink) is
        # removed, not opened: O_EXCL creates a new file or fails, O_NOFOLLOW refuses a symlink
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
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


# --- reads: every file aelab reads back is untrusted input -------------------------------------

def read_inside(path: str | Path, root: str | Path, max_bytes: int) -> bytes:
    """The bytes of regular file `path` below folder `root`, read without following any symlink.

    Refused with one `RunError` naming the file: a symlink anywhere between `root` and the file
    (so nothing outside the folder is ever read), anything but a regular file (a FIFO, a device
    such as /dev/zero, a folder), and a file over `max_bytes`, before it is read.
    """
    path, root = Path(path), Path(root)
    check_inside(path, root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise RunError(f"{path} does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunError(f"{path} is a symlink; aelab reads only files inside the run folder") from None
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunError(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise RunError(f"{path} is {st.st_size:,} bytes, more than the {max_bytes:,} aelab reads "
                           f"for this file")
        chunks, total = [], 0
        while total <= max_bytes and (chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:  # it grew while being read
            raise RunError(f"{path} is more than the {max_bytes:,} bytes aelab reads for this file")
        return b"".join(chunks)
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def file_identity(path: str | Path) -> tuple[int, int, int, int]:
    """What says a file is still the one read before: device, inode, size and mtime, of the path
    itself (a symlink is not followed). An atomic rewrite changes the inode."""
    st = os.lstat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def check_inside(path: str | Path, root: str | Path) -> None:
    """Raise `RunError` unless `path` lies below `root` through real folders only (no symlinks)."""
    path, root = Path(path), Path(root)
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise RunError(f"{path} is outside {root}") from None
    if ".." in rel.parts:
        raise RunError(f"{path} is outside {root}")
    try:
        for current, st in _walk_below(root, rel):
            if st is None:
                return  # the caller reports a missing file in its own words
            if stat.S_ISLNK(st.st_mode):
                raise RunError(f"{current} is a symlink; aelab reads only files inside the run folder")
    except OSError as e:
        raise RunError(f"cannot read {e.filename or path}: {e.strerror or e}") from None


def check_regular_file(path: str | Path, root: str | Path, max_bytes: int, missing: str) -> None:
    """For files read by a library that opens them itself (safetensors): `missing` when absent, else
    one `RunError` unless `path` is a regular file below `root`, no symlink, at most `max_bytes`."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise RunError(missing)
    check_inside(path, root)
    if path.is_symlink() or not path.is_file():
        raise RunError(f"{path} is not a regular file")
    if path.stat().st_size > max_bytes:
        raise RunError(f"{path} is larger than the {max_bytes:,} bytes aelab reads for it")


def is_file_inside(path: str | Path, root: str | Path) -> bool:
    """True when `path` is a regular file below `root` reached without any symlink."""
    try:
        check_inside(path, root)
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (RunError, OSError):
        return False


def parse_json(data: bytes, where: str | Path, max_depth: int = 32) -> Any:
    """JSON from untrusted bytes: UTF-8, at most `max_depth` levels deep, else one `RunError`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunError(f"{where} is not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise RunError(f"{where} is nested too deeply") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{where} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's int parsing limit)
        raise RunError(f"{where} is not valid JSON (a number too long to read)") from None
    if _depth(obj, max_depth) > max_depth:
        raise RunError(f"{where} is nested more than {max_depth} levels deep")
    return obj


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counting stops once it passes `limit`."""
    stack, deepest = [(obj, 1)], 0
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def user_path(text: str | Path, what: str = "path") -> Path:
    """A path a user typed, with `~` expanded; `~nosuchuser` is one `AelabError`, not a traceback,
    and so is an empty one (Path("") is the current folder: `aelab sample ""` wrote samples/ there)."""
    if not str(text).strip():
        raise AelabError(f"{what} is empty; name a folder or file")
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise AelabError(f"{what} {str(text)!r}: cannot expand {str(text).split('/')[0]!r}") from None
