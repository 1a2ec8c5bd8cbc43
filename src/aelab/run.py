"""A loaded run: the model in eval mode with its config, and what you do with it.

    run = load_run("runs/seed")
    codes = run.encode(images)            # (n, 28, 28) uint8 or float in [0, 1] -> (n, h)
    images = run.decode(codes)            # (n, h) -> (n, 28, 28) float in [0, 1]
    images = run.sample(64, "gmm")        # codes from a sampler fitted on the training codes
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import describe_mismatch, load_checkpoint, model_state, tensors_digest
from .checks import check_sample_count, check_seed, require_finite
from .config import Config
from .data.images import to_float_images
from .errors import AelabError, RunError
from .models import create_model
from .rundir import RunDir, read_weights

__all__ = ["Run", "load_run", "pick_device"]


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` -> cuda, then mps, then cpu; else any device torch names ("cpu", "cuda:1", a
    `torch.device`) that is here. An unknown or unavailable one is an `AelabError`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise AelabError(f"device {name!r} is not one torch knows here: use 'auto', 'cpu', 'cuda' or "
                         f"'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda: no CUDA device is available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RunError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RunError("--device mps: no MPS device is available here; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise AelabError(f"device {name!r}: aelab runs on cpu, cuda or mps")
    return device


@dataclass
class Run:
    """A trained run loaded for use: the model in eval mode plus its config and metrics."""

    path: Path
    config: Config
    model: torch.nn.Module
    device: torch.device
    data_info: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    # fitted samplers loaded from RUN_DIR/samplers/, by name: (file identity, sampler); reused
    # while the file's inode, size and mtime stay the same (`samplers.fitting.fitted_sampler`)
    loaded_samplers: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def weights_digest(self) -> str:
        """SHA-256 of the model's weights and buffers as loaded: a fitted sampler file records the
        digest it was fitted on, so one fitted on other weights (a run trained further meanwhile)
        is fitted again rather than reused (`samplers.fitting.fitted_sampler`). Computed once: a
        Run's model is what was loaded (change it, and load the run again)."""
        if not hasattr(self, "_weights_digest"):
            self._weights_digest = tensors_digest(self.model.state_dict())
        return self._weights_digest

    @property
    def latent_dim(self) -> int:
        return self.config.model.latent_dim

    @torch.no_grad()
    def encode(self, images: torch.Tensor | np.ndarray, batch_size: int = 2048,
               preactivation: bool = False) -> torch.Tensor:
        """Images (n, 28, 28) uint8 or float in [0, 1] -> codes (n, latent_dim) on the CPU.

        `preactivation=True` gives an autoencoder's code before its final ReLU.
        """
        batch_size = _batch_size(batch_size)
        x = to_float_images(images)
        if preactivation and not hasattr(self.model, "encode_preactivation"):
            raise AelabError(f"preactivation=True needs a code behind a final ReLU (the dense "
                             f"autoencoder); this run's {self.config.model.architecture} "
                             f"{self.config.model.kind} code has none")
        fn = self.model.encode_preactivation if preactivation else self.model.encode
        out = [fn(x[i:i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        codes = torch.cat(out) if out else x.new_zeros(0, self.latent_dim)
        return require_finite(codes, f"the encoder of {self.path} produced NaN or inf codes", RunError)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor | np.ndarray, batch_size: int = 2048) -> torch.Tensor:
        """Codes (n, latent_dim) -> images (n, 28, 28) float, clipped to [0, 1], on the CPU."""
        batch_size = _batch_size(batch_size)
        z = self._codes(codes)
        out = [self.model.decode(z[i:i + batch_size].to(self.device)).float().cpu()
               for i in range(0, len(z), batch_size)]
        images = torch.cat(out).reshape(-1, 28, 28) if out else torch.zeros(0, 28, 28)
        require_finite(images, f"the decoder of {self.path} produced NaN or inf pixels", RunError)
        return images.clamp(0, 1)

    def _codes(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Codes as float32 (n, latent_dim), checked: the right size, finite."""
        try:
            raw = codes if torch.is_tensor(codes) else np.ascontiguousarray(codes)
            if raw.dtype.is_complex if torch.is_tensor(raw) else np.iscomplexobj(raw):
                raise TypeError("complex")
            z = torch.as_tensor(raw, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise AelabError("codes must be a real numeric array of shape (n, latent_dim)") from None
        if z.ndim == 1 and len(z) == self.latent_dim:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise AelabError(f"codes must have shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        return require_finite(z, "codes contain NaN or inf")

    def reconstruct(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.decode(self.encode(images))

    def sample(self, n: int, sampler: str = "normal", seed: int = 0, **kwargs: Any) -> torch.Tensor:
        """n images (n, 28, 28) from codes drawn by a sampler (fitted on training codes if needed)."""
        from .samplers.fitting import sample_codes  # here: fitting loads the dataset

        check_sample_count(n)
        return self.decode(sample_codes(self, sampler, n, check_seed(seed), **kwargs))


def _batch_size(batch_size: Any) -> int:
    """`batch_size` as a Python int (a numpy uint8 would overflow in the slices), else AelabError."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise AelabError(f"batch_size={batch_size!r} must be a positive whole number")
    return int(batch_size)


def load_run(path: str | Path, device: str = "cpu", weights: str = "final") -> Run:
    """Load a run folder's config and weights (`weights="final"` or `"checkpoint"`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise AelabError(f"load_run needs a run folder's path (str or path-like), got {type(path).__name__}")
    run_dir = RunDir(path)
    try:
        cfg, data_info = run_dir.read_config()
    except OSError as e:  # a path the system cannot take: too long, a loop of symlinks
        raise RunError(f"cannot read the run folder {str(path)[:200]}: {e.strerror or e}") from None
    model = create_model(cfg.model)
    if weights not in ("final", "checkpoint"):
        raise AelabError(f"weights={weights!r} must be 'final' or 'checkpoint'")
    if weights == "final" or not run_dir.has_file(run_dir.checkpoint):
        state = read_weights(run_dir.model, run_dir.path)
    else:
        state = model_state(load_checkpoint(run_dir.checkpoint)[0])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        source = run_dir.model if weights == "final" else run_dir.checkpoint
        raise RunError(f"weights in {source} do not fit the run's config ({describe_mismatch(e)})") from None
    dev = pick_device(device)
    model.to(dev).eval()
    return Run(run_dir.path, cfg, model, dev, data_info, run_dir.read_metrics())
