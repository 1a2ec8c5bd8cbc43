"""One full-covariance Gaussian fitted to the codes: the `gaussian` sampler."""

import numpy as np

from .base import Sampler, standardize_active
from .registry import SAMPLERS

__all__ = ["GaussianSampler"]


class GaussianSampler(Sampler):
    """One full-covariance Gaussian fitted to the codes.

    Attributes
    ----------
    mean_ : ndarray (latent_dim,)
    covariance_ : ndarray (latent_dim, latent_dim), empirical; zero rows for constant dims
    active_dims_ : ndarray of int, the non-constant dimensions
    """

    name = "gaussian"
    _state = ("mean_", "covariance_", "active_dims_")

    def __init__(self, clip="none", reg_covar=1e-6):
        super().__init__(clip=clip)
        self.reg_covar = reg_covar

    def _fit(self, codes):
        active, mean, _, _ = standardize_active(codes)
        self.active_dims_, self.mean_ = active, mean
        self.covariance_ = np.zeros((len(mean), len(mean)))
        if len(active):
            cov = np.cov(codes[:, active], rowvar=False).reshape(len(active), len(active))
            self.covariance_[np.ix_(active, active)] = cov

    def _draw(self, n, rng):
        a = self.active_dims_
        out = np.tile(self.mean_, (n, 1))
        if len(a):
            cov = self.covariance_[np.ix_(a, a)]
            cov = cov + self.reg_covar * np.diag(np.diag(cov))  # ridge relative to each variance
            chol = np.linalg.cholesky(cov)
            out[:, a] += rng.standard_normal((n, len(a))) @ chol.T
        return out


SAMPLERS.add("gaussian", GaussianSampler, "one full-covariance Gaussian fitted to the training codes")
