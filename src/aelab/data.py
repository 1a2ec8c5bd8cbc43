"""Datasets for aelab: read and check IDX files, find, download and cache MNIST-like sets.

Every dataset is four IDX files (train/test images and labels, 28x28 grey, 10 classes) held in
memory as uint8 tensors. `load_dataset` looks for them in this order: a folder you name
(`data_dir`), the download cache (`cache_root()/<name>/`), Debian's Fashion-MNIST package,
a download from the official mirrors and, for MNIST only, the 12,000-image subset shipped
inside the package.

    >>> from aelab.data import load_dataset
    >>> data = load_dataset("mnist")             # cache -> download -> bundled subset
    >>> images, labels = data.split("train")     # uint8 (n, 28, 28), int64 (n,)

Environment: AELAB_CACHE (cache folder), AELAB_MIRRORS (comma-separated base URLs),
AELAB_OFFLINE=1 (never use the network).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from aelab.errors import DataError

__all__ = ["ImageData", "bundled_dir", "cache_root", "download_file", "is_official",
           "list_datasets", "load_dataset", "load_split_files", "read_idx"]

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MAX_IDX_BYTES = 10**9  # refuse any IDX header that declares more data than this
TIMEOUT_S = 10  # per network operation
ATTEMPTS_PER_MIRROR = 2
CHUNK = 1 << 20
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # package dataset-fashion-mnist


@dataclass(frozen=True)
class Checksum:
    """Published checksum(s) of one official .gz file; every one given is verified."""

    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: base URLs tried in order and the checksum of each standard file."""

    mirrors: tuple[str, ...]
    checksums: Mapping[str, Checksum]


def _sums(*pairs: tuple[str, str]) -> Mapping[str, Checksum]:
    """Map the four standard names, in FILES order, to (sha256, md5) pairs."""
    return MappingProxyType({f: Checksum(s, m) for f, (s, m) in zip(FILES, pairs, strict=True)})


# SHA-256: tensorflow/datasets, tensorflow_datasets/url_checksums/{mnist,fashion_mnist,kmnist}.txt
# (the MNIST t10k values also equal shared/datasets/README.md and the bundled files).
# MD5: MNIST as published with the data set and Fashion-MNIST as published by Zalando (both
# quoted in the shared datasets README); KMNIST from torchvision's KMNIST.resources.
REGISTRY: Mapping[str, DatasetSpec] = MappingProxyType({
    "mnist": DatasetSpec(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        _sums(("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
               "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
               "d53e105ee54ea40749a09fcbcd1e9432"),
              ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
               "9fb629c4189551a2d022fa330f9573f3"),
              ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
               "ec29112dd5afa0611ce80d1b7f02629c"))),
    "fashion-mnist": DatasetSpec(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        _sums(("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
               "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
              ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
               "25c81989df183df01b3e8a0aad5dffbe"),
              ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
               "bef4ecab320f06d8554ea6380940ec79"),
              ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
               "bb300cfdad3c16e7a12a480ee83cd310"))),
    "kmnist": DatasetSpec(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        _sums(("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
               "bdb82020997e1d708af4cf47b453dcf7"),
              ("e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
               "e144d726b3acfaa3e44228e80efcd344"),
              ("edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
               "5c965bf0a639b31b8f53240b1b52f4d7"),
              ("20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
               "7320c461ea6c1c855c0b718fb2a4b134"))),
})


class _ImageDataset(torch.utils.data.Dataset):
    """Items are (float32 image of shape (1, 28, 28) in [0, 1], int label); storage stays uint8."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].unsqueeze(0).float() / 255.0, int(self.labels[i])


@dataclass(frozen=True, eq=False)
class ImageData:
    """One dataset in memory: uint8 images (n, 28, 28), int64 labels (n,), and where it came from.

    `files` maps each file name read to the SHA-256 of its bytes (gz or raw, as stored).
    """

    name: str
    source: str
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    files: dict[str, str] = field(default_factory=dict)

    def info(self) -> dict:
        """JSON-able summary: name, source, files (checksums), n_train, n_test, official."""
        return {"name": self.name, "source": self.source, "files": dict(self.files),
                "n_train": len(self.train_labels), "n_test": len(self.test_labels),
                "official": is_official(self.name, self.files)}

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (images, labels) of split "train" or "test"."""
        if name == "train":
            return self.train_images, self.train_labels
        if name == "test":
            return self.test_images, self.test_labels
        raise DataError(f"split={name!r} must be 'train' or 'test'")

    def torch_dataset(self, split: str) -> torch.utils.data.Dataset:
        """A Dataset of (float32 (1, 28, 28) image in [0, 1], int label) for `split`."""
        return _ImageDataset(*self.split(split))


# ---------------------------------------------------------------- IDX files


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


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
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


def _hexdigests(path: Path, algorithms: Sequence[str]) -> dict[str, str]:
    """Hash a file in one pass with each of `algorithms` ("sha256", "md5")."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _find_file(folder: Path, gz_name: str) -> Path:
    """The file for a standard name: .gz or raw, also the 'train-images.idx3-ubyte' spelling."""
    raw = gz_name.removesuffix(".gz")
    dotted = raw.replace("-idx", ".idx")
    for candidate in (gz_name, raw, dotted + ".gz", dotted):
        if (folder / candidate).is_file():
            return folder / candidate
    raise DataError(f"{folder} has no {raw} (or {gz_name})")


def load_split_files(folder: str | Path, name: str = "mnist", source: str | None = None
                     ) -> ImageData:
    """Read and check the four standard IDX files in `folder` (no official-checksum check)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder")
    paths = [_find_file(folder, f) for f in FILES]
    train, test = _read_pair(paths[0], paths[1]), _read_pair(paths[2], paths[3])
    tensors = [torch.from_numpy(a) for a in (train[0], train[1].astype(np.int64),
                                             test[0], test[1].astype(np.int64))]
    return ImageData(name, source or f"data-dir {folder}", *tensors,
                     files={p.name: _hexdigests(p, ["sha256"])["sha256"] for p in paths})


# ---------------------------------------------------------------- registry and cache


def list_datasets() -> list[str]:
    """Names `load_dataset` accepts."""
    return list(REGISTRY)


def _spec(name: str) -> DatasetSpec:
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def is_official(name: str, files: Mapping[str, str]) -> bool:
    """True when all four files are the official .gz files (by the registry's SHA-256)."""
    sums = REGISTRY[name].checksums if name in REGISTRY else {}
    return bool(sums) and all(sums[f].sha256 is not None and files.get(f) == sums[f].sha256
                              for f in FILES)


def bundled_dir() -> Path:
    """The MNIST subset shipped with the package (12,000 train / 10,000 test images)."""
    return Path(__file__).parent / "_data" / "mnist-subset"


def cache_root() -> Path:
    """Download cache: $AELAB_CACHE, default ~/.cache/aelab."""
    return Path(os.environ.get("AELAB_CACHE") or Path.home() / ".cache" / "aelab").expanduser()


def _matches(path: Path, checksum: Checksum) -> bool:
    """Whether the file's bytes have every checksum given in `checksum`."""
    expected = {a: v for a in ("sha256", "md5") if (v := getattr(checksum, a))}
    return _hexdigests(path, list(expected)) == expected


def _cache_complete(folder: Path, spec: DatasetSpec) -> bool:
    return all((folder / f).is_file() and _matches(folder / f, spec.checksums[f]) for f in FILES)


# ---------------------------------------------------------------- download


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
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False,
                      file=sys.stderr, disable=not progress) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if total is not None and received != total:
            raise ConnectionError(f"connection closed after {received} of {total} bytes")
        if not _matches(tmp, checksum):
            raise _ChecksumMismatch(f"{url}: checksum mismatch, not the expected {dest.name}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


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


def _mirrors(spec: DatasetSpec, mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is None and os.environ.get("AELAB_MIRRORS"):
        mirrors = os.environ["AELAB_MIRRORS"].split(",")
    return [m.strip() for m in (spec.mirrors if mirrors is None else mirrors) if m.strip()]


def _download_dataset(spec: DatasetSpec, folder: Path, mirrors: list[str], progress: bool
                      ) -> None:
    """Fetch each file of `spec` that `folder` lacks (or holds damaged), checksum-verified."""
    for f in FILES:
        if not ((folder / f).is_file() and _matches(folder / f, spec.checksums[f])):
            urls = [m.rstrip("/") + "/" + f for m in mirrors]
            download_file(urls, folder / f, spec.checksums[f].sha256, spec.checksums[f].md5,
                          progress)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_dataset(name: str = "mnist", data_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, download: bool = True,
                 mirrors: list[str] | None = None, fallback_to_bundled: bool = True,
                 log: Callable[[str], None] = _stderr, progress: bool = True) -> ImageData:
    """Load dataset `name` into memory.

    Parameters
    ----------
    name : one of `list_datasets()`.
    data_dir : folder with the four IDX files (gz or raw); used as given, checked for format
        only. When set, nothing else is tried.
    cache_dir : replaces `cache_root()`; files live in `cache_dir/<name>/`.
    download : allow downloading (AELAB_OFFLINE=1 forbids it too).
    mirrors : base URLs replacing the registry's (default: $AELAB_MIRRORS, then registry).
    fallback_to_bundled : for "mnist", use the bundled subset when nothing else works.
    log : receives one-line notices.
    progress : show a download progress bar on stderr (only when it is a terminal).
    """
    spec = _spec(name)
    if data_dir is not None:
        data = load_split_files(data_dir, name, f"data-dir {data_dir}")
        if not data.info()["official"]:
            log(f"notice: files in {data_dir} do not match the official {name} checksums; "
                "using them as given")
        return data
    folder = Path(cache_dir or cache_root()).expanduser() / name
    if _cache_complete(folder, spec):
        return load_split_files(folder, name, f"cache {folder}")
    if name == "fashion-mnist" and DEBIAN_FASHION_DIR.is_dir():
        return load_split_files(DEBIAN_FASHION_DIR, name, f"debian {DEBIAN_FASHION_DIR}")
    if os.environ.get("AELAB_OFFLINE", "").lower() in ("1", "true", "yes"):
        reason = "AELAB_OFFLINE=1 is set"
    elif not download:
        reason = "downloads are switched off"
    else:
        try:
            _download_dataset(spec, folder, _mirrors(spec, mirrors),
                              progress and sys.stderr.isatty())
            log(f"aelab: downloaded {name} into {folder}")
            return load_split_files(folder, name, "download")
        except DataError as exc:
            reason = str(exc).replace("\n", " ")
    if name == "mnist" and fallback_to_bundled:
        log(f"aelab: full MNIST is not cached and could not be downloaded ({reason}); "
            "training on the bundled subset (12,000 train / 10,000 test images). "
            "Use --data-dir DIR for the full set.")
        return load_split_files(bundled_dir(), "mnist", "bundled subset")
    raise DataError(f"{name} is not in {folder} and could not be downloaded ({reason}); "
                    "use --data-dir DIR, a folder with the four IDX files")
