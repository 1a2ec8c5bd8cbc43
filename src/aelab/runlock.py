"""A run folder's lock: one process trains into a folder at a time, and a lock left by a killed
process never blocks the next.

    with hold(folder, folder / ".lock"):   # RunError at once if another process holds it
        ...
    refuse_if_held(folder, folder / ".lock")   # the same check, creating nothing

The lock is `flock` on `.lock`, so the kernel drops it however the holder ends. The file is
untrusted like everything in a run folder: it is opened without following symlinks and without
blocking, and refused unless it is a plain file with one name.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RunError

__all__ = ["hold", "refuse_if_held"]


@contextmanager
def hold(folder: Path, lockfile: Path) -> Iterator[None]:
    """Hold an exclusive lock so two processes never train into the same folder.

    The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a
    stale `.lock` file never blocks a resume. The holder's pid is written into it for the
    message the next process shows. A process that finishes removes the file while it still
    holds the lock; one that opened the old file meanwhile sees it is gone and tries again.
    """
    for _ in range(5):
        fd = _open(folder, lockfile)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = _busy_message(fd, folder)
            os.close(fd)
            raise RunError(message) from None
        if _same_file(fd, lockfile):
            break
        os.close(fd)  # the holder removed the file we opened: lock the current one
    else:
        raise RunError(f"cannot lock {folder}: its lock file keeps changing")
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for the message; the lock itself is held
        yield
    finally:
        try:
            if _same_file(fd, lockfile):  # ours, still locked: nobody else holds it now (a cleanup
                lockfile.unlink()         # may have removed it, and another start made a new one)
        except OSError:
            pass
        os.close(fd)


def _open(folder: Path, lockfile: Path) -> int:
    """The lock file, opened or created: a plain file with one name (a planted hard link would get
    the pid written into its target, a FIFO would block), else one `RunError`."""
    try:
        fd = os.open(lockfile, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        raise RunError(f"cannot lock {folder}: {e.strerror or e}") from None
    if not stat.S_ISREG((st := os.fstat(fd)).st_mode) or st.st_nlink > 1:
        os.close(fd)
        raise RunError(f"cannot lock {folder}: {lockfile} is not a plain file (a link or pipe?)")
    return fd


def _same_file(fd: int, lockfile: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(lockfile, follow_symlinks=False).st_ino
    except OSError:
        return False


def _busy_message(fd: int, folder: Path) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    holder = f" (pid {pid})" if pid.isdigit() else ""
    return f"another process{holder} is training into {folder}"


def refuse_if_held(folder: Path, lockfile: Path) -> None:
    """Raise `RunError` if a live process holds this folder's lock; never creates anything."""
    try:
        fd = os.open(lockfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return  # no lock file (or unreadable, or a symlink): nobody is training here
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return  # a pipe or device: not a lock aelab took
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(_busy_message(fd, folder)) from None
        except OSError:
            return
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
