"""Training-batch augmentation: random integer shifts of each image (input and target alike).

    x = random_shift(x, pixels=1)    # (n, 784) -> (n, 784), each image moved by dy, dx in [-1, 1]

An autoencoder's target is its input, so a shifted digit is one more training image of the same
kind; on the 11,000-image MNIST subset it narrows the gap between training and test error (see
the README, "Which autoencoder, and why"). Offsets come from torch's global generator, which the
checkpoint saves, so a resumed run draws the same shifts as one straight run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_shift"]


def random_shift(x: torch.Tensor, pixels: int, side: int = 28) -> torch.Tensor:
    """Each image of x (n, side * side) moved by its own random (dy, dx) in [-pixels, pixels]^2;
    pixels moved in from outside are 0."""
    n = len(x)
    padded = F.pad(x.reshape(n, side, side), (pixels, pixels, pixels, pixels))  # (n, side + 2p, side + 2p)
    offsets = torch.randint(0, 2 * pixels + 1, (n, 2)).to(x.device)            # (n, 2): row, column start
    span = torch.arange(side, device=x.device)
    rows = (offsets[:, 0, None] + span)[:, :, None]                               # (n, side, 1)
    cols = (offsets[:, 1, None] + span)[:, None, :]                               # (n, 1, side)
    return padded[torch.arange(n, device=x.device)[:, None, None], rows, cols].reshape(n, side * side)
