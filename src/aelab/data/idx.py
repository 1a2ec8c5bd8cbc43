"""IDX files: read and check them before a byte of their data is allocated.

    images = read_idx("train-images-idx3-ubyte.gz", expected_ndim=3)   # uint8 (n, 28, 28)
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError

__all__ = ["read_idx", "read_pair", "MAX_IDX_BYTES"]

MAX_IDX_BYTES = 10**9  # refuse any IDX header that declares more data than this
CHUNK = 1 << 20


def _read_bounded(stream: BinaryIO, limit: int) -> bytes:
    """Read at most `limit` bytes in chunks, so memory follows the data, never a header."""
    chunks, total = [], 0
    while total < limit:
        chunk = stream.read(min(CHUNK, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _parse_idx(stream: BinaryIO, where: str, expected_ndim: int | None) -> np.ndarray:
    """Check the header, then read exactly the declared data; `where` names the file."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0":
        raise DataError(f"{where}: not an IDX file (bad magic number {magic.hex() or 'empty'})")
    if magic[2] != 0x08:
        raise DataError(f"{where}: IDX type code 0x{magic[2]:02x} is not supported "
                        "(only 0x08, unsigned byte)")
    ndim = magic[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{where}: has {ndim} dimensions, expected {expected_ndim}")
    if not 1 <= ndim <= 4:
        raise DataError(f"{where}: IDX header declares {ndim} dimensions (1 to 4 allowed)")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{where}: file ends inside the IDX header")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    size = math.prod(dims)
    if size > MAX_IDX_BYTES:
        raise DataError(f"{where}: header declares shape {dims} = {size} bytes, more than the "
                        f"{MAX_IDX_BYTES} allowed; refusing to read it")
    data = _read_bounded(stream, size + 1)
    if len(data) < size:
        raise DataError(f"{where}: file too short: header declares shape {dims} = {size} "
                        f"bytes of data, only {len(data)} present")
    if len(data) > size:
        raise DataError(f"{where}: trailing bytes after the {size} data bytes of shape {dims}")
    return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(dims)


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzip or raw (told apart by magic bytes, not name).

    Returns a uint8 array of the shape the header declares (`expected_ndim` dimensions when
    given). Raises DataError naming the file and what is wrong: missing, corrupt or truncated
    gzip, bad magic or type code, wrong ndim, data shorter or longer than the header says.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            if f.read(2) == b"\x1f\x8b":
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as gz:
                    return _parse_idx(gz, str(path), expected_ndim)
            f.seek(0)
            return _parse_idx(f, str(path), expected_ndim)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc}); "
                        "the file is corrupt or truncated") from None


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one split and check it is 28x28 images with one label in 0..9 per image."""
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
                        "expected 28x28")
    if len(images) == 0:
        raise DataError(f"{images_path}: holds no images")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                        f"in {images_path.name}")
    if labels.max() > 9:
        raise DataError(f"{labels_path}: labels must be 0..9, found {int(labels.max())}")
    return images, labels


