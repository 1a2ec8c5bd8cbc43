"""The variational head: any encoder trunk and decoder become a VAE (Kingma & Welling 2014).

    vae = VAE(trunk, feature_dim=256, latent_dim=128, make_decoder=lambda: dec_of(128))
    mu, logvar = vae.encode_moments(x)   # q(z|x) = N(mu, exp(logvar)), each (n, h)
    loss, parts = vae.loss(x)            # negative ELBO per image; parts recon, kl, mse

`encode` returns the posterior mean, so samplers, figures and `Run` treat AE and VAE alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VAE", "gaussian_kl"]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dims and averaged over the batch.

    Closed form, Kingma & Welling App. B: -0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2).
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(mu)


class VAE(nn.Module):
    """Gaussian-encoder VAE: `encoder` (image -> features of `feature_dim`), one linear head to
    the mean and log-variance of a `latent_dim` code, and `make_decoder()` (code -> image).

    The decoder is built after the head, so parameters are drawn from the seed in the order
    encoder, head, decoder. `kl_scale` (not a parameter; the engine sets it each step for
    `--kl-warmup`) multiplies beta; it is 1 outside training.
    """

    loss_parts = ("recon", "kl", "mse")

    def __init__(self, encoder: nn.Module, feature_dim: int, latent_dim: int,
                 make_decoder: Callable[[], nn.Module], output_activation: str = "sigmoid",
                 beta: float = 1.0):
        super().__init__()
        self.beta = beta
        self.kl_scale = 1.0
        self.encoder = encoder
        self.to_moments = nn.Linear(feature_dim, 2 * latent_dim)  # -> (mean, log-variance), each (n, h)
        self.decoder = make_decoder()
        self.output_activation = output_activation

    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_moments(self.encoder(torch.flatten(x, start_dim=1))).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_moments(x)[0]

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction from the posterior mean (deterministic, used for evaluation)."""
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Negative ELBO per image: reconstruction + beta * kl_scale * KL(q(z|x) || N(0, I)).

        Reconstruction is Bernoulli (binary cross-entropy summed over pixels) with a sigmoid output,
        else Gaussian (squared error summed over pixels).
        """
        x = torch.flatten(x, start_dim=1)
        mu, logvar = self.encode_moments(x)
        x_hat = self.decode(self.reparameterize(mu, logvar))
        n = x.shape[0]
        if self.output_activation == "sigmoid":
            recon = F.binary_cross_entropy(x_hat, x, reduction="sum") / n
        else:
            recon = F.mse_loss(x_hat, x, reduction="sum") / n
        kl = gaussian_kl(mu, logvar)
        mse = F.mse_loss(x_hat.detach(), x)
        weight = self.beta * self.kl_scale  # beta exactly when kl_scale is 1
        return recon + weight * kl, {"recon": recon.detach(), "kl": kl.detach(), "mse": mse}
