"""Draw latent codes for a run: fit a sampler on the run's training codes once, then reuse it."""

from __future__ import annotations

import numpy as np
import torch

from .errors import AelabError

__all__ = ["list_samplers", "sample_codes"]


def list_samplers() -> list[str]:
    return ["normal"]


def sample_codes(run, name: str, n: int, seed: int = 0, **kwargs) -> torch.Tensor:
    """Codes (n, latent_dim) from sampler `name` for `run`."""
    if name != "normal":
        raise AelabError(f"unknown sampler {name!r}; choose from {', '.join(list_samplers())}")
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((n, run.latent_dim)).astype(np.float32))
