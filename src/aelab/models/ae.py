"""The deterministic autoencoder of the newer families, and the loss every AE shares.

    model = AE(encoder, decoder, code_penalty=0.0)
    z = model.encode(x)          # (n, 784) or (n, 28, 28) in [0, 1] -> (n, h)
    x_hat = model.decode(z)      # (n, h) -> (n, 784)
    loss, parts = model.loss(x)  # per-pixel MSE [+ beta_z * mean 0.5 ||z||^2]; parts mse [, code_l2]

With `code_penalty` > 0 this is the regularised autoencoder of Ghosh et al. (ICLR 2020, "From
Variational to Deterministic Autoencoders", eq. 11: L_REC + beta * L_Z with L_Z = 0.5 ||z||^2;
the decoder's L2 term is the optimizer's weight decay on the decoder, `--decoder-weight-decay`).
Their L_REC sums squared errors over pixels; aelab's is the per-pixel mean, so beta_z here is
theirs divided by 784.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AE", "ae_loss", "ae_parts"]


def ae_parts(code_penalty: float) -> tuple[str, ...]:
    """The names of the parts `ae_loss` returns, in order."""
    return ("mse", "code_l2") if code_penalty else ("mse",)


def ae_loss(x_hat: torch.Tensor, x: torch.Tensor, z: torch.Tensor,
            code_penalty: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pixel MSE, plus `code_penalty` * mean over the batch of 0.5 * ||z||^2 when it is > 0."""
    mse = F.mse_loss(x_hat, x)
    if not code_penalty:
        return mse, {"mse": mse.detach()}
    code_l2 = 0.5 * z.pow(2).sum(dim=1).mean()
    return mse + code_penalty * code_l2, {"mse": mse.detach(), "code_l2": code_l2.detach()}


class AE(nn.Module):
    """`encoder`: image (n, 784) -> code (n, h); `decoder`: code -> image (n, 784)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, code_penalty: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.code_penalty = code_penalty
        self.loss_parts = ae_parts(code_penalty)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(torch.flatten(x, start_dim=1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = torch.flatten(x, start_dim=1)
        z = self.encode(x)
        return ae_loss(self.decode(z), x, z, self.code_penalty)
