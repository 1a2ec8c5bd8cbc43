"""A second VAE on a VAE's codes: the `two-stage` sampler (Dai & Wipf, "Diagnosing and Enhancing
VAE Models", ICLR 2019).

    sampler = TwoStageSampler().fit(codes)    # first-stage codes (n, d), e.g. a VAE's means
    codes = sampler.sample(64, seed=1)         # u ~ N(0, I) through the second decoder: (64, d)

A first-stage VAE's aggregate posterior does not fill its N(0, I) prior, so prior draws land
where no code is. The second stage is a small VAE fitted to the first one's codes (whitened
principal components, see `neural`): an MLP encoder to q(u|z), an MLP decoder to the mean of p(z|u) and a
learned scalar variance gamma of p(z|u), as in the paper; a learned gamma can shrink toward 0,
which lets the second VAE match the codes' distribution where the first could not. Its prior
is sampled through its decoder (the mean, no added noise), so the sampler returns first-stage
codes, which the run's decoder then renders. It applies to any codes; `aelab` offers it for VAE
runs, as the paper does.
"""

import math

import numpy as np
import torch
from torch import nn

from aelab.errors import AelabError

from .neural import MAX_LAYERS, MAX_WIDTH, NeuralSampler, check_positive
from .registry import SAMPLERS

__all__ = ["TwoStageSampler", "SecondStageVAE"]


def _mlp(n_in, hidden, depth, n_out):
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, n_out))


class SecondStageVAE(nn.Module):
    """q(u|z) = N(mu, exp(logvar)), p(z|u) = N(decoder(u), gamma I), u of `latent_dim`."""

    def __init__(self, a, latent_dim, hidden, depth):
        super().__init__()
        self.encoder = _mlp(a, hidden, depth, 2 * latent_dim)   # z (b, a) -> (mu, logvar) (b, 2u)
        self.decoder = _mlp(latent_dim, hidden, depth, a)       # u (b, u) -> mean of z (b, a)
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def loss(self, z, gen, beta=1.0):
        """Negative ELBO per code (nats): Gaussian reconstruction with variance gamma + beta KL."""
        mu, logvar = self.encoder(z).chunk(2, dim=1)
        u = mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp()
        a = z.shape[1]
        recon = (0.5 * ((z - self.decoder(u)) ** 2).sum(1) / self.log_gamma.exp()
                 + 0.5 * a * (self.log_gamma + math.log(2 * math.pi)))
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)  # Kingma & Welling, App. B
        return (recon + beta * kl).mean()


class TwoStageSampler(NeuralSampler):
    """A second-stage VAE on the codes; its N(0, I) prior through its decoder gives codes.

    Parameters
    ----------
    latent_dim : int or None
        Size of the second stage's code u; None: the number of active first-stage dims.
    hidden, depth : int
        Width and number of hidden layers of each MLP.
    kl_warmup : int
        Epochs over which the KL term's weight rises linearly to 1 (Bowman et al., CoNLL 2016);
        0: none. On whitened codes a constant decoder with gamma = 1 is a stationary point (the
        codes have unit variance in every direction), and a second VAE started there without a
        warm-up stayed there (posterior collapse: held-out loss 0.5 k (1 + log 2 pi), FID 1226 for
        the VAE run).
    max_epochs, batch_size, lr, valid_share, patience, keep_variance, random_state, clip
        See `neural.NeuralSampler`.
    """

    name = "two-stage"
    _whiten_kept = False  # rotated and scaled as one: a linear VAE learns nothing from whitened codes
    _beta = 1.0  # the KL weight of the current training epoch (see kl_warmup)

    def __init__(self, latent_dim=None, hidden=512, depth=3, kl_warmup=10, clip="none", random_state=0,
                 max_epochs=80, batch_size=256, lr=1e-3, valid_share=0.1, patience=20,
                 keep_variance=0.995):
        super().__init__(clip=clip, random_state=random_state, max_epochs=max_epochs,
                         batch_size=batch_size, lr=lr, valid_share=valid_share, patience=patience,
                         keep_variance=keep_variance)
        if latent_dim is not None:
            check_positive("latent_dim", latent_dim, most=MAX_WIDTH)
        check_positive("hidden", hidden, most=MAX_WIDTH)
        check_positive("depth", depth, most=MAX_LAYERS)
        if isinstance(kl_warmup, bool) or not (isinstance(kl_warmup, (int, np.integer)) and kl_warmup >= 0):
            raise AelabError(f"kl_warmup={kl_warmup!r} must be a non-negative integer")
        self.latent_dim, self.hidden, self.depth, self.kl_warmup = latent_dim, hidden, depth, kl_warmup

    def _u_dim(self, a):
        return self.latent_dim or a

    def _build(self, a):
        return SecondStageVAE(a, self._u_dim(a), self.hidden, self.depth)

    def _start_epoch(self, epoch):
        self._beta = min(1.0, epoch / (self.kl_warmup + 1))

    def _loss(self, net, z, gen):
        # the held-out loss (net in eval mode) is always the full negative ELBO, so epochs compare
        return net.loss(z, gen, beta=self._beta if net.training else 1.0)

    def _generate(self, net, rng, n):
        u = torch.from_numpy(rng.standard_normal((n, self._u_dim(self.n_kept_))).astype(np.float32))
        return torch.cat([net.decoder(chunk) for chunk in u.split(4096)]).double().numpy()


SAMPLERS.add("two-stage", TwoStageSampler, "a second small VAE on a VAE's codes, its prior sampled "
             "through both decoders (Dai & Wipf 2019)")
