"""What every sampler shares: checks on the codes it is fitted to, and the fit/sample contract.

A sampler is a fitted object (scikit-learn's convention): `__init__` stores parameters,
`fit(codes)` learns arrays with a trailing underscore and returns self, `sample(n, seed)`
draws codes, float32 (n, latent_dim). Subclasses set `name`, `_state` (the learned arrays
`save` writes) and `_fit` / `_draw`.

Constant ("dead") dimensions are detected in ``fit`` (std < 1e-6), left out of the density
and put back, exactly, when sampling. With ``clip="observed"`` samples are clipped to the
per-dimension [min, max] of the fitted codes (a ReLU code is never below 0).

``fit`` and ``sample`` run on `aelab.engine.cpu_threads()` threads (one unless OMP_NUM_THREADS
says otherwise), torch's and the BLAS / OpenMP pools alike, as training does: OpenBLAS threads
spin while they wait, and on a shared 2-core machine (load ~10) one EM iteration of a
100-component GMM on 12,000 64-d points took 4-6 s on one thread against 10-34 s on two.
"""

import inspect
from contextlib import contextmanager

import numpy as np
import torch

from aelab.checks import require_finite
from aelab.errors import AelabError

__all__ = ["Sampler", "DEAD_STD", "check_codes", "cpu_threads", "standardize_active"]

DEAD_STD = 1e-6  # a dimension whose std is below this is constant ("dead")


def check_codes(codes):
    """Return codes as a float64 array of shape (n_samples, latent_dim), or raise."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] < 2 or codes.shape[1] < 1:
        raise AelabError(f"codes must have shape (n_samples >= 2, latent_dim >= 1), "
                         f"got {codes.shape}")
    require_finite(codes, "codes contain NaN or inf; check the encoder output")
    return codes


def standardize_active(codes):
    """Return (active_dims, mean, std, standardized codes of the active dims)."""
    mean, std = codes.mean(axis=0), codes.std(axis=0)
    active = np.flatnonzero(std >= DEAD_STD)
    return active, mean, std, (codes[:, active] - mean[active]) / std[active]


def principal_axes(x):
    """(variances (a,), axes (a, a)) of the covariance of x (n, a): rows of `axes` are the
    principal axes in order of falling variance; variances clipped at 0."""
    variances, axes = np.linalg.eigh(np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]))
    return np.clip(variances[::-1], 0, None), axes[:, ::-1].T.copy()


def axes_holding(variances, share):
    """The fewest leading axes whose variances (falling order) hold `share` of their sum."""
    held = np.cumsum(variances) / max(variances.sum(), np.finfo(float).tiny)
    return int(min(np.searchsorted(held, share - 1e-12) + 1, len(variances)))


@contextmanager
def cpu_threads():
    """Run a block on `aelab.engine.cpu_threads()` threads (torch, BLAS and OpenMP pools)."""
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    from aelab.engine import cpu_threads as threads

    n, old = threads(), torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(old)


class Sampler:
    """Shared fit/sample/save logic. Subclasses set ``name``, ``_state`` and ``_fit``/``_draw``."""

    name = ""
    _state = ()  # names of learned arrays saved by save()

    def __init__(self, clip="none"):
        if clip not in ("observed", "none"):
            raise AelabError(f"clip={clip!r} is not valid; choose 'observed' or 'none'")
        self.clip = clip

    def get_config(self):
        """Return the constructor arguments as a dict."""
        names = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in names if k != "self"}

    def fit(self, codes):
        """Fit the sampler to latent codes of shape (n_samples, latent_dim); return self."""
        codes = check_codes(codes)
        self.n_features_in_ = codes.shape[1]
        self.data_min_, self.data_max_ = codes.min(axis=0), codes.max(axis=0)
        with cpu_threads():
            self._fit(codes)
        return self

    def sample(self, n, seed):
        """Draw ``n`` codes with ``np.random.default_rng(seed)``.

        Returns
        -------
        ndarray of float32, shape (n, latent_dim)
        """
        if not hasattr(self, "n_features_in_"):
            raise AelabError(f"{type(self).__name__} is not fitted; call fit(codes) first")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise AelabError(f"n={n!r} must be a positive integer")
        with cpu_threads():
            out = self._draw(int(n), np.random.default_rng(seed))  # (n, latent_dim) float64
        if self.clip == "observed":
            out = np.clip(out, self.data_min_, self.data_max_)
        return out.astype(np.float32)

    def save(self, path, fitted_on=None):
        """Write the fitted sampler to a safetensors file, atomically (see `fileformat`)."""
        from .fileformat import save_sampler

        save_sampler(self, path, fitted_on)

    def _saved_state(self):
        """Names of the learned arrays ``save`` writes."""
        return self._state

    def _state_layouts(self):
        """Every set of array names a saved file of this sampler may hold (besides data_min_/max_)."""
        return [self._state]

    def _set_state(self, arrays):
        self.n_features_in_ = len(arrays["data_min_"])
        for k, v in arrays.items():
            setattr(self, k, v)

    def _finish_load(self):
        """Derive what the saved arrays leave out; runs after `fileformat.check_shapes` accepted them."""


