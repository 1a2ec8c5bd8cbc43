"""One full-covariance Gaussian fitted to the codes: the `gaussian` sampler."""

import numpy as np

from aelab.errors import RunError

from .base import Sampler, standardize_active
from .registry import SAMPLERS

__all__ = ["GaussianSampler", "require_cholesky"]


def require_cholesky(cov, path, name):
    """The Cholesky factor of `cov`; a matrix that is not symmetric positive definite is a RunError."""
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-9):
        raise RunError(f"{path}: {name} is not symmetric")
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise RunError(f"{path}: {name} is not positive definite") from None



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

    def _check_loaded(self, path):
        """The covariance of a loaded file must be symmetric and positive definite (with the ridge)."""
        require_cholesky(self._ridged(self.covariance_), path, "covariance_")

    def _ridged(self, covariance):
        """The active dims' covariance with `reg_covar` added relative to each variance."""
        cov = covariance[np.ix_(self.active_dims_, self.active_dims_)]
        return cov + self.reg_covar * np.diag(np.diag(cov))

    def _draw(self, n, rng):
        a = self.active_dims_
        out = np.tile(self.mean_, (n, 1))
        if len(a):
            chol = np.linalg.cholesky(self._ridged(self.covariance_))
            out[:, a] += rng.standard_normal((n, len(a))) @ chol.T
        return out


SAMPLERS.add("gaussian", GaussianSampler, "one full-covariance Gaussian fitted to the training codes")
