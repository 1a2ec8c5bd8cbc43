"""Find a dataset and load it: a folder you name, the cache, Debian's package, a download, or
the MNIST subset shipped inside the package, in that order.

    >>> from aelab.data import load_dataset
    >>> data = load_dataset("mnist")             # cache -> download -> bundled subset
    >>> images, labels = data.split("train")     # uint8 (n, 28, 28), int64 (n,)

Environment: AELAB_CACHE (cache folder), AELAB_MIRRORS (comma-separated base URLs),
AELAB_OFFLINE=1 (never use the network).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .download import download_file, hexdigests, matches
from .idx import read_pair
from .images import ImageData
from .registry import DATASETS, FILES, DatasetSpec

__all__ = ["bundled_dir", "cache_root", "list_datasets", "load_dataset",
           "load_split_files"]

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # package dataset-fashion-mnist


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
    train, test = read_pair(paths[0], paths[1]), read_pair(paths[2], paths[3])
    tensors = [torch.from_numpy(a) for a in (train[0], train[1].astype(np.int64),
                                             test[0], test[1].astype(np.int64))]
    return ImageData(name, source or f"data-dir {folder}", *tensors,
                     files={p.name: hexdigests(p, ["sha256"])["sha256"] for p in paths})


# ---------------------------------------------------------------- registry and cache


def list_datasets() -> list[str]:
    """Names `load_dataset` accepts."""
    return DATASETS.names()


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS.names())}")
    return DATASETS.get(name)


def bundled_dir() -> Path:
    """The MNIST subset shipped with the package (12,000 train / 10,000 test images)."""
    return Path(__file__).resolve().parents[1] / "_data" / "mnist-subset"


def cache_root() -> Path:
    """Download cache: $AELAB_CACHE, default ~/.cache/aelab."""
    return Path(os.environ.get("AELAB_CACHE") or Path.home() / ".cache" / "aelab").expanduser()


def _cache_complete(folder: Path, spec: DatasetSpec) -> bool:
    return all((folder / f).is_file() and matches(folder / f, spec.checksums[f]) for f in FILES)


# ---------------------------------------------------------------- download


def _mirrors(spec: DatasetSpec, mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is None and os.environ.get("AELAB_MIRRORS"):
        mirrors = os.environ["AELAB_MIRRORS"].split(",")
    return [m.strip() for m in (spec.mirrors if mirrors is None else mirrors) if m.strip()]


def _download_dataset(spec: DatasetSpec, folder: Path, mirrors: list[str], progress: bool
                      ) -> None:
    """Fetch each file of `spec` that `folder` lacks (or holds damaged), checksum-verified."""
    for f in FILES:
        if not ((folder / f).is_file() and matches(folder / f, spec.checksums[f])):
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
        log(f"aelab: using the bundled subset of MNIST (12,000 train / 10,000 test images): "
            f"full MNIST is not cached and could not be downloaded ({reason[:120]}); "
            "--data-dir DIR uses another copy")
        return load_split_files(bundled_dir(), "mnist", "bundled subset")
    raise DataError(f"{name} is not in {folder} and could not be downloaded ({reason}); "
                    "use --data-dir DIR, a folder with the four IDX files")
