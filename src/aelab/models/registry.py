"""The model registries: architectures (`MODELS`) and what is trained on them (`KINDS`).

Each architecture file registers its builder at its bottom, `fn(cfg: ModelConfig) -> nn.Module`;
`aelab.models` imports every such file, so the registry is full once that package is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry

__all__ = ["MODELS", "KINDS"]

MODELS: Registry[Callable[[Any], Any]] = Registry("model")
KINDS: Registry[str] = Registry("model kind")
KINDS.add("ae", "ae", "a deterministic autoencoder: image -> code -> image")
KINDS.add("vae", "vae", "a variational autoencoder: a Gaussian encoder and an N(0, I) prior")
