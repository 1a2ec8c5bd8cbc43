"""A small denoising diffusion model over the codes: the `diffusion` sampler.

    sampler = DiffusionSampler().fit(codes)   # codes (n, d); ~10% held out for early stopping
    new_codes = sampler.sample(64, seed=1)    # (64, d) float32, by `steps` DDIM steps

Training is DDPM's (Ho et al., NeurIPS 2020): a whitened code z0 (see `neural`) is noised to
z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps at a random step t of T = 1000 with the cosine
schedule of Nichol & Dhariwal (ICML 2021), and an MLP learns, by mean squared error, to predict
v = sqrt(abar_t) eps - sqrt(1 - abar_t) z0 (Salimans & Ho, ICLR 2022), from which z0 and eps
both follow without dividing by a small sqrt(abar_t): predicting eps, the first DDIM step
divides its error by sqrt(abar_T) = 0.003 and the samples diverge (std 100 on standardized
codes, measured on a 4-d test mixture). Sampling is DDIM's deterministic update (Song et al.,
ICLR 2021) over `steps` evenly spaced steps, from Gaussian noise drawn with the sampler's seed.
The saved weights are an exponential moving average of the trained ones (decay `ema`), as in
DDPM; the held-out loss that picks the epoch is the averaged network's.
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aelab.errors import AelabError

from .neural import MAX_LAYERS, MAX_WIDTH, NeuralSampler, check_positive
from .registry import SAMPLERS

__all__ = ["DiffusionSampler", "Denoiser", "cosine_alpha_bar"]

T = 1000  # diffusion steps in training


def cosine_alpha_bar(t):
    """abar(t) of Nichol & Dhariwal's cosine schedule for integer steps t in [0, T], float64."""
    s = 0.008
    f = torch.cos((torch.as_tensor(t, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
    return (f / math.cos(s / (1 + s) * math.pi / 2) ** 2).clamp(1e-5, 1.0)


class Denoiser(nn.Module):
    """The denoiser MLP: (z_t (b, a), t (b,)) -> v (b, a), with `depth` residual SiLU blocks."""

    def __init__(self, a, hidden, depth, time_dim=64):
        super().__init__()
        self.time_dim = time_dim
        self.inp = nn.Linear(a + time_dim, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                                                  nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, a))

    def forward(self, z, t):
        half = self.time_dim // 2  # sinusoidal embedding of the step, as in the Transformer
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]                          # (b, half)
        h = self.inp(torch.cat([z, angles.sin(), angles.cos()], dim=1))   # (b, hidden)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class DiffusionSampler(NeuralSampler):
    """A denoising diffusion model on the whitened codes: DDPM training, DDIM sampling.

    Parameters
    ----------
    hidden : int
        Width of the denoiser MLP.
    depth : int
        Residual blocks in the denoiser.
    steps : int
        DDIM sampling steps (at most T = 1000).
    ema : float
        Decay of the moving average of the weights that is kept and saved, in [0, 1).
    max_epochs, batch_size, lr, valid_share, patience, keep_variance, random_state, clip
        See `neural.NeuralSampler`.
    """

    name = "diffusion"

    def __init__(self, hidden=256, depth=2, steps=50, ema=0.999, clip="none", random_state=0,
                 max_epochs=400, batch_size=256, lr=2e-3, valid_share=0.1, patience=60,
                 keep_variance=0.995):
        super().__init__(clip=clip, random_state=random_state, max_epochs=max_epochs,
                         batch_size=batch_size, lr=lr, valid_share=valid_share, patience=patience,
                         keep_variance=keep_variance)
        check_positive("hidden", hidden, most=MAX_WIDTH)
        check_positive("depth", depth, most=MAX_LAYERS)
        check_positive("steps", steps)
        if steps > T:
            raise AelabError(f"steps={steps!r} must be at most the {T} training steps")
        if not (isinstance(ema, (int, float)) and 0 <= ema < 1):
            raise AelabError(f"ema={ema!r} must be in [0, 1)")
        self.hidden, self.depth, self.steps, self.ema = hidden, depth, steps, ema

    def _build(self, a):
        return Denoiser(a, self.hidden, self.depth)

    def _loss(self, net, z, gen):
        t = torch.randint(1, T + 1, (len(z),), generator=gen)
        eps = torch.randn(z.shape, generator=gen)
        a, s = cosine_alpha_bar(t).float().sqrt()[:, None], (1 - cosine_alpha_bar(t).float()).sqrt()[:, None]
        return F.mse_loss(net(a * z + s * eps, t), a * eps - s * z)  # v = a eps - s z0

    def _generate(self, net, rng, n):
        z = torch.from_numpy(rng.standard_normal((n, self.n_kept_)).astype(np.float32))
        ts = torch.linspace(T, 0, self.steps + 1).round().long()   # T, ..., 0
        abar = cosine_alpha_bar(ts).float()
        abar[-1] = 1.0                                              # the last step lands on z0
        out = []
        for chunk in z.split(4096):
            x = chunk
            for i in range(self.steps):
                v = net(x, ts[i].expand(len(x)))
                a, s = abar[i].sqrt(), (1 - abar[i]).sqrt()
                x0, eps = a * x - s * v, s * x + a * v
                x = abar[i + 1].sqrt() * x0 + (1 - abar[i + 1]).sqrt() * eps
            out.append(x)
        return torch.cat(out).double().numpy()


SAMPLERS.add("diffusion", DiffusionSampler, "a small denoising diffusion model (MLP, DDPM training, DDIM "
             "sampling) fitted to the training codes")
