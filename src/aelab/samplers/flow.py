"""A normalizing flow fitted to the codes: the `flow` sampler (zuko's neural spline flow).

    sampler = FlowSampler().fit(codes)        # codes (n, d); ~10% held out for early stopping
    new_codes = sampler.sample(64, seed=1)    # (64, d) float32

The flow is `zuko.flows.NSF` (Durkan et al., "Neural Spline Flows", NeurIPS 2019) with coupling
transforms (``passes=2``): half of the dims are moved by monotonic rational-quadratic splines
whose knots an MLP computes from the other half, and every transform permutes the dims at
random (seeded by ``random_state``, so a reload rebuilds the same permutations). Coupling makes
sampling one network pass per transform, where a fully autoregressive flow needs one per dim.
It is fitted by maximum likelihood on the whitened principal components of the codes (see
`neural`); zuko's splines act on [-5, 5] and are the identity outside, where whitened codes
rarely are.
"""

import numpy as np
import torch

from .neural import MAX_LAYERS, MAX_WIDTH, NeuralSampler, check_positive
from .registry import SAMPLERS

__all__ = ["FlowSampler"]


class FlowSampler(NeuralSampler):
    """A neural spline flow on the whitened codes, fitted by maximum likelihood.

    Parameters
    ----------
    transforms : int
        Coupling transforms, each with its own random permutation of the dims.
    hidden : int
        Width of the two hidden layers of each transform's MLP.
    bins : int
        Spline bins per dim.
    max_epochs, batch_size, lr, valid_share, patience, keep_variance, random_state, clip
        See `neural.NeuralSampler`.

    Attributes
    ----------
    active_dims_, mean_, std_, network_ : the saved state (see `neural`)
    history_ : list of per-epoch losses (negative log-likelihood per code, nats), after `fit` only
    """

    name = "flow"
    _layers = "transforms"

    def __init__(self, transforms=4, hidden=128, bins=8, clip="none", random_state=0, max_epochs=50,
                 batch_size=256, lr=1e-3, valid_share=0.1, patience=5,
                 keep_variance=0.995):
        super().__init__(clip=clip, random_state=random_state, max_epochs=max_epochs,
                         batch_size=batch_size, lr=lr, valid_share=valid_share, patience=patience,
                         keep_variance=keep_variance)
        check_positive("transforms", transforms, most=MAX_LAYERS)
        check_positive("hidden", hidden, most=MAX_WIDTH)
        check_positive("bins", bins, most=256)
        self.transforms, self.hidden, self.bins = transforms, hidden, bins

    def _build(self, a):
        import zuko  # here, not at the top: only this sampler needs it

        return zuko.flows.NSF(a, transforms=self.transforms, hidden_features=(self.hidden, self.hidden),
                              bins=self.bins, passes=2, randperm=True)

    def _loss(self, net, z, gen):
        return -net().log_prob(z).mean()

    def _generate(self, net, rng, n):
        noise = torch.from_numpy(rng.standard_normal((n, self.n_kept_)).astype(np.float32))
        return torch.cat([net().transform.inv(chunk) for chunk in noise.split(4096)]).double().numpy()


SAMPLERS.add("flow", FlowSampler, "a normalizing flow (zuko neural spline flow) fitted to the training codes")
