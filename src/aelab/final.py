"""What a finished run records about itself (`final.json`), and the reconstruction every number
and figure of it comes from.

    final_record(model, metrics, split, data, device)   # the dict train() writes to final.json
    reconstruct_images(model, images_u8)                # (n, 28, 28) in [0, 1], as Run.reconstruct
"""

from __future__ import annotations

import torch
from torch import nn

from .data import ImageData
from .data.images import to_float_images
from .engine import _TorchThreads, evaluate_loss, to_float_batch
from .splits import Split

__all__ = ["final_record", "reconstruct_images", "reconstruction_mse"]


@torch.no_grad()
def reconstruct_images(model: nn.Module, images_u8: torch.Tensor) -> torch.Tensor:
    """The model's eval-mode output for uint8 images, clipped to [0, 1], (n, 28, 28) on the CPU."""
    was = model.training
    model.eval()
    out = model(to_float_batch(images_u8)).float().clamp(0, 1).reshape(-1, 28, 28).cpu()
    model.train(was)
    return out


def reconstruction_mse(model: nn.Module, images_u8: torch.Tensor, device: torch.device) -> float:
    """Mean squared error per pixel of `reconstruct_images` (what `Run.reconstruct` gives) on the images."""
    total = 0.0
    for i in range(0, len(images_u8), 2000):
        batch = images_u8[i:i + 2000]
        out = reconstruct_images(model, batch.to(device)).reshape(-1, 784).double()
        diff = out - to_float_images(batch).double()
        total += float((diff ** 2).sum())
    return total / (784 * max(1, len(images_u8)))


def final_record(model: nn.Module, metrics: list[dict], split: Split, data: ImageData,
                 device: torch.device, threads: int | None = None) -> dict:
    """The last epoch's train and validation parts, the test split's (scored now), which is which,
    and `reconstruction`: the MSE of what `aelab.load_run(RUN).reconstruct(x)` returns on the
    validation and test images (outputs clipped to [0, 1], a VAE's posterior mean decoded), where
    the loss parts score the raw output (a ReLU output exceeds 1) and a VAE's one sampled code."""
    last = metrics[-1]
    with _TorchThreads(threads if device.type == "cpu" else None):  # the thread count of training
        test = evaluate_loss(model, data.test_images.to(device))
        clipped = {"valid_mse": reconstruction_mse(model, split.valid_images, device),
                   "test_mse": reconstruction_mse(model, data.test_images, device)}
    best = min(metrics, key=lambda m: m["valid_loss"])
    seconds = sorted(m["seconds"] for m in metrics)
    return {"epoch": last["epoch"], "splits": split.info(),
            "train": {k[6:]: v for k, v in last.items() if k.startswith("train_")},
            "valid": {k[6:]: v for k, v in last.items() if k.startswith("valid_")},
            "test": test,
            "reconstruction": {**clipped, "how": "aelab.load_run(RUN).reconstruct(x): outputs clipped "
                               "to [0, 1], a VAE's posterior mean decoded"},
            "best_valid_epoch": best["epoch"], "best_valid_loss": best["valid_loss"],
            "seconds_per_epoch_median": seconds[len(seconds) // 2]}
