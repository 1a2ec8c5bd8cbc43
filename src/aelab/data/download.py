"""Downloads: one file from a list of mirrors, checksum-verified, written atomically.

    download_file(["https://a/x.gz", "https://b/x.gz"], "cache/x.gz", sha256="...")
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ..errors import DataError
from .registry import Checksum

__all__ = ["download_file", "matches", "hexdigests"]

TIMEOUT_S = 10  # per network operation
DEADLINE_S = 600  # per file, all of it: a mirror that trickles bytes is given up
MIN_RATE = 20_000  # bytes per second on average, checked after the first GRACE_S seconds
GRACE_S = 15
MAX_DOWNLOAD_BYTES = 200 << 20  # the largest official file is 26 MB
ATTEMPTS_PER_MIRROR = 2
CHUNK = 1 << 20


def hexdigests(path: Path, algorithms: Sequence[str]) -> dict[str, str]:
    """Hash a file in one pass with each of `algorithms` ("sha256", "md5")."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}




def matches(path: Path, checksum: Checksum) -> bool:
    """Whether the file's bytes have every checksum given in `checksum` (a file larger than any
    dataset file does not, unread: a 10 GB cache entry took a minute to hash)."""
    try:
        if path.stat().st_size > MAX_DOWNLOAD_BYTES:
            return False
    except OSError:
        return False
    expected = {a: v for a in ("sha256", "md5") if (v := getattr(checksum, a))}
    return hexdigests(path, list(expected)) == expected


class _ChecksumMismatch(Exception):
    """A download arrived whole but is not the expected file."""


def _fetch(url: str, dest: Path, checksum: Checksum, progress: bool) -> None:
    """Download `url` to a temp file beside `dest`; verify; then rename it to `dest`."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_DOWNLOAD_BYTES:
                raise ConnectionError(f"the server offers {total:,} bytes, more than any dataset file")
            received, started = 0, time.monotonic()
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False,
                      file=sys.stderr, disable=not progress) as bar:
                while chunk := resp.read1(CHUNK):  # whatever has arrived: the checks below run often
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    _check_pace(received, time.monotonic() - started)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and received != total:
            raise ConnectionError(f"connection closed after {received} of {total} bytes")
        if not matches(tmp, checksum):
            raise _ChecksumMismatch(f"{url}: checksum mismatch, not the expected {dest.name}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _check_pace(received: int, elapsed: float) -> None:
    """Give up on a download that is too big, too slow on average, or past its deadline."""
    if received > MAX_DOWNLOAD_BYTES:
        raise ConnectionError(f"more than {MAX_DOWNLOAD_BYTES:,} bytes arrived; not a dataset file")
    if elapsed > DEADLINE_S:
        raise ConnectionError(f"gave up after {DEADLINE_S} s ({received:,} bytes arrived)")
    if elapsed > GRACE_S and received / elapsed < MIN_RATE:
        raise ConnectionError(f"too slow: {received / elapsed:,.0f} bytes/s after {elapsed:.0f} s "
                              f"(at least {MIN_RATE:,} needed)")


def download_file(urls: Sequence[str], dest: str | Path, sha256: str | None = None,
                  md5: str | None = None, progress: bool = False) -> None:
    """Download one file, trying each URL in order (2 attempts each), atomically.

    The bytes go to a temp file in dest's folder, are fsynced and checked against every
    checksum given, and only then renamed to `dest`; on any failure nothing is left behind.
    A checksum mismatch moves on to the next URL. Raises DataError when every URL failed.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download folder {dest.parent}: {exc}") from None
    errors: list[str] = []
    for url in urls:
        for _ in range(ATTEMPTS_PER_MIRROR):
            try:
                _fetch(url, dest, Checksum(sha256, md5), progress)
                return
            except _ChecksumMismatch as exc:
                errors.append(str(exc))
                break
            except urllib.error.HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                if exc.code < 500:
                    break
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{url}: {exc}")
    last = errors[-1] if errors else "no mirror given"
    raise DataError(f"download of {dest.name} failed from {len(urls)} mirror(s); "
                    f"last error: {last}")


