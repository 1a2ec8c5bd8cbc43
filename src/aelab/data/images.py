"""Images in memory: a dataset's uint8 tensors, and the one conversion of images to floats.

Storage stays uint8 (n, 28, 28); `to_float_images` is the only place pixels become floats,
the tutorial's ToTensor + flatten, and it checks what it is given:

    x = to_float_images(uint8_images)        # float32 (n, 784) in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import AelabError, DataError
from .registry import is_official

__all__ = ["ImageData", "to_float_images"]


def to_float_images(images: Any, name: str = "images") -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images (n, 28, 28), (n, 1, 28, 28) or (n, 784) -> float32 (n, 784).

    uint8 is divided by 255 (exactly the tutorial's ToTensor); floats must be finite and lie in
    [0, 1]; any other dtype or shape raises `AelabError` naming `name`.
    """
    if isinstance(images, np.ndarray) and images.dtype.kind not in "biuf":
        raise AelabError(f"{name} must be a numeric array, got dtype {images.dtype}")
    try:  # a numpy view with negative strides (x[::-1]) is valid input torch cannot wrap as it is
        x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    except (TypeError, ValueError, RuntimeError):  # ragged lists, strings, None, dicts
        raise AelabError(f"{name} must be a tensor or numeric array of images, got "
                         f"{type(images).__name__}") from None
    if x.layout != torch.strided or x.device.type == "meta":
        raise AelabError(f"{name} must be a dense tensor with values, got layout {x.layout} on {x.device}")
    if x.dtype == torch.uint8:
        x = x.reshape(len(x), -1).float().div_(255.0) if x.ndim and len(x) else x.float()
    elif x.is_floating_point():
        x = x.float()
        if x.ndim and len(x):
            x = x.reshape(len(x), -1)
            lo, hi = torch.aminmax(x)
            if not (torch.isfinite(lo) and torch.isfinite(hi)):
                raise AelabError(f"{name} contain NaN or inf")
            if lo < 0 or hi > 1:  # enough digits to show 1.0001 is not 1
                raise AelabError(f"{name} must lie in [0, 1], got [{lo:.7g}, {hi:.7g}]; "
                                 "clip with x.clamp(0, 1)")
    else:
        raise AelabError(f"{name} must be float in [0, 1] or uint8, got dtype {x.dtype}")
    if x.ndim == 0 or (len(x) and x.reshape(len(x), -1).shape[1] != 784):
        shape = tuple(torch.as_tensor(images).shape)
        raise AelabError(f"{name} must have shape (n, 28, 28) or (n, 784), got {shape}")
    return x.reshape(len(x), 784)


class _ImageDataset(torch.utils.data.Dataset):
    """Items are (float32 image of shape (1, 28, 28) in [0, 1], int label); storage stays uint8."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return to_float_images(self.images[i:i + 1]).reshape(1, 28, 28), int(self.labels[i])


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
