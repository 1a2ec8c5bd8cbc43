"""Model families. Every model has one interface: `encode`, `decode`, `forward`, `loss`, `loss_parts`.

    model = create_model(ModelConfig(architecture="conv", kind="ae", latent_dim=32))
    z = model.encode(x)            # (n, 784) or (n, 28, 28) in [0, 1] -> (n, h)
    x_hat = model.decode(z)        # (n, h) -> (n, 784)
    loss, parts = model.loss(x)    # parts: a dict with the keys model.loss_parts, "mse" among them

    registry.py      MODELS (architectures, with their own output activation) and KINDS (ae, vae)
    blocks.py        shared layers: dense and conv blocks, output activations
    ae.py            the deterministic AE of the newer families and the loss every AE shares
    vae.py           the variational head any trunk and decoder can take
    dense.py         "dense": the tutorial's network and its VAE
    dense_linear.py  "dense-linear": the same widths, a linear code and a sigmoid output
    conv.py          "conv": strided convolutions, a linear code, transposed convolutions
    catalog.py       `describe_models`: what `aelab models` lists (imported on demand)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

# registration order is the order of the CLI's choices and of `aelab models`
# isort: off
from . import dense as _dense  # noqa: F401  (registers "dense")
from . import dense_linear as _dense_linear  # noqa: F401  (registers "dense-linear")
from . import conv as _conv  # noqa: F401  (registers "conv")
# isort: on
from .ae import AE
from .blocks import ACTIVATIONS, dense
from .dense import Autoencoder, DenseVAE, decoder, encoder
from .registry import KINDS, MODELS
from .vae import VAE

if TYPE_CHECKING:
    from ..config import ModelConfig

__all__ = ["ACTIVATIONS", "AE", "KINDS", "MODELS", "Autoencoder", "DenseVAE", "VAE", "create_model",
           "decoder", "default_output_activation", "dense", "encoder", "model_warning",
           "parameter_count"]


def default_output_activation(cfg: ModelConfig) -> str:
    """The output activation `cfg`'s architecture uses for its kind when the config names none."""
    KINDS.get(cfg.kind)
    return MODELS.get(cfg.architecture).output_activation[cfg.kind]


def model_warning(cfg: ModelConfig) -> str | None:
    """A one-line caution about this config from its architecture (e.g. a ReLU'd 2-d code), or None."""
    return MODELS.get(cfg.architecture).warning(cfg)


def create_model(cfg: ModelConfig) -> nn.Module:
    """Build the model a `ModelConfig` describes; an unknown architecture or kind is an error."""
    KINDS.get(cfg.kind)
    return MODELS.get(cfg.architecture)(cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

