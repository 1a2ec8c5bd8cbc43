"""Datasets for aelab: MNIST-like sets of 28x28 grey images with 10 classes, held as uint8.

    registry.py   the datasets aelab knows (mirrors, checksums); no torch
    idx.py        reading and checking IDX files
    download.py   checksum-verified, atomic downloads over mirrors
    images.py     `ImageData` and `to_float_images`, the one image-to-float conversion
    load.py       `load_dataset`: folder, cache, Debian package, download, bundled subset

The names below load their module on first use, so `aelab.data.registry` stays light.
"""

from importlib import import_module
from typing import Any

_PUBLIC = {
    "DATASETS": "registry", "FILES": "registry", "is_official": "registry", "download_file": "download",
    "read_idx": "idx", "ImageData": "images", "to_float_images": "images", "bundled_dir": "load",
    "cache_root": "load", "list_datasets": "load", "load_dataset": "load", "load_split_files": "load",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
