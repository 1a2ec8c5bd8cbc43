"""The train / validation / test split of a run: validation carved from the training images.

    split = Split.of(data, valid_fraction=1 / 12)
    split.train_images, split.valid_images     # uint8 (n, 28, 28): 11,000 and 1,000 of 12,000
    split.info()                               # what each split is, for final.json

`valid_fraction` > 0 holds out that share of the training images (rounded), chosen by a
permutation from a generator seeded with `SPLIT_SEED`: the same images for every run on the same
data, whatever its `--seed`, so runs are selected on one validation set. The official test split
is never used for validation or selection; it is scored once, at the end (`final.json`).
`valid_fraction` = 0 validates on the test split, as the tutorial does (the seed presets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import ImageData
from .errors import DataError

__all__ = ["Split", "SPLIT_SEED", "heldout_indices"]

SPLIT_SEED = 0


def heldout_indices(n: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, valid) index tensors into n training images, each sorted; valid holds round(n * fraction)."""
    n_valid = round(n * fraction)
    if fraction > 0 and not 2 <= n_valid <= n - 2:
        raise DataError(f"valid_fraction={fraction:g} of {n} training images leaves {n_valid} for "
                        f"validation and {n - n_valid} for training; both need at least 2")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return torch.sort(perm[n_valid:]).values, torch.sort(perm[:n_valid]).values


@dataclass(frozen=True)
class Split:
    """The images a run trains and validates on, and the name of the split it validates on."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    valid_images: torch.Tensor
    valid_labels: torch.Tensor
    valid_name: str            # "heldout" (carved from the training images) or "test"
    valid_fraction: float
    n_test: int

    @classmethod
    def of(cls, data: ImageData, valid_fraction: float) -> Split:
        if valid_fraction == 0:
            return cls(data.train_images, data.train_labels, data.test_images, data.test_labels, "test",
                       0.0, len(data.test_images))
        train, valid = heldout_indices(len(data.train_images), valid_fraction)
        return cls(data.train_images[train], data.train_labels[train], data.train_images[valid],
                   data.train_labels[valid], "heldout", valid_fraction, len(data.test_images))

    def info(self) -> dict:
        """Which images each split holds, in words and counts (JSON-able)."""
        valid = ("the official test split (valid_fraction 0, as the tutorial)" if self.valid_name == "test"
                 else f"{len(self.valid_images)} training images held out (valid_fraction "
                      f"{self.valid_fraction:.4g}, split seed {SPLIT_SEED})")
        return {"train": {"n": len(self.train_images), "from": "the training images" +
                          ("" if self.valid_name == "test" else " not held out")},
                "valid": {"n": len(self.valid_images), "from": valid, "name": self.valid_name},
                "test": {"n": self.n_test, "from": "the official test split"}}
