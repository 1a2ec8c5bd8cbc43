"""`dense-linear`: the tutorial's widths with a linear code and a sigmoid output.

    model = create_model(ModelConfig(architecture="dense-linear", latent_dim=32, width_dim=128))

784-4w-2w (Linear + BatchNorm1d + ReLU blocks, w = width_dim or h), then one Linear layer to the
h-dim code: no BatchNorm, no ReLU, so codes take any sign and scale. Back: h-2w-4w blocks, then
Linear 4w-784 and a sigmoid (no BatchNorm on the output: it would pin each pixel's batch mean).
Only the code layer and the output differ from `dense`; its VAE is the same trunk and decoder
with a Gaussian head (the same network as `dense --variational`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .ae import AE
from .blocks import activation, dense, narrow_widths_warning
from .registry import register_model
from .vae import VAE

if TYPE_CHECKING:
    from ..config import ModelConfig

__all__ = ["trunk", "decoder", "dense_linear_model"]


def trunk(image_dim: int, w: int) -> nn.Sequential:
    """Image (n, image_dim) -> features (n, 2w): two Linear + BatchNorm1d + ReLU blocks."""
    return nn.Sequential(dense(image_dim, 4 * w), dense(4 * w, 2 * w))


def decoder(h: int, image_dim: int, w: int, output_activation: str) -> nn.Sequential:
    """Code (n, h) -> image (n, image_dim): blocks h-2w-4w, then Linear 4w-784 and the activation."""
    return nn.Sequential(dense(h, 2 * w), dense(2 * w, 4 * w), nn.Linear(4 * w, image_dim),
                         activation(output_activation))


# --- registered variants ---------------------------------------------------------------------

@register_model("dense-linear", "the tutorial's widths with a linear code (no BatchNorm or ReLU on "
                "it) and a sigmoid output", warning=narrow_widths_warning)
def dense_linear_model(cfg: ModelConfig) -> nn.Module:
    w, h = cfg.width_dim or cfg.latent_dim, cfg.latent_dim
    act = cfg.output_activation or dense_linear_model.output_activation[cfg.kind]
    if cfg.kind == "vae":
        def make_decoder() -> nn.Module:
            return decoder(h, cfg.image_dim, w, act)

        return VAE(trunk(cfg.image_dim, w), 2 * w, h, make_decoder, act, cfg.beta)
    encoder = nn.Sequential(trunk(cfg.image_dim, w), nn.Linear(2 * w, h))
    return AE(encoder, decoder(h, cfg.image_dim, w, act), cfg.code_penalty)
