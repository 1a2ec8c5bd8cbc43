"""Model families. Every model has one interface: `encode`, `decode`, `forward`, `loss`.

    model = create_model(ModelConfig(architecture="dense", kind="ae", latent_dim=128))

    registry.py   MODELS (architectures) and KINDS (ae, vae)
    blocks.py     shared layers: the tutorial's dense block, output activations
    vae.py        the variational head any trunk and decoder can take
    dense.py      the tutorial's network and its VAE (registered as "dense")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from . import dense as _dense  # noqa: F401  (registers "dense")
from .blocks import ACTIVATIONS, dense
from .dense import Autoencoder, DenseVAE, decoder, encoder
from .registry import KINDS, MODELS
from .vae import VAE

if TYPE_CHECKING:
    from ..config import ModelConfig

__all__ = ["ACTIVATIONS", "KINDS", "MODELS", "Autoencoder", "DenseVAE", "VAE", "create_model", "decoder",
           "dense", "encoder", "parameter_count"]


def create_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a `ModelConfig` describes; an unknown architecture or kind is an error."""
    KINDS.get(cfg.kind)
    return MODELS.get(cfg.architecture)(cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
