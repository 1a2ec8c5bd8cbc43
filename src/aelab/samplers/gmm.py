"""Samplers over latent codes: fit a density to the codes, then draw new codes to decode.

A plain autoencoder has no prior, so drawing N(0, I) codes (the tutorial's ``normal``) lands
far from where a ReLU encoder puts its codes: they are non-negative, sparse and often have dead
dimensions. Ex-post density estimation (Ghosh et al., "From Variational to Deterministic
Autoencoders", ICLR 2020) fits a density to the training codes instead::

    sampler = GMMSampler(n_components=20, random_state=0).fit(codes)   # codes: (n, d)
    new_codes = sampler.sample(64, seed=1)                               # (64, d) float32
    sampler.save("gmm.safetensors"); load_sampler("gmm.safetensors")

The ``gmm`` sampler and how its defaults were chosen. The default is ``clip="none"`` because
clipping measured worse: for ``aelab.models.Autoencoder()`` trained 15 epochs on the 12k subset,
the classifier FID of 5,000 decoded GMM samples rose with clipping (K=10: 202 -> 227, K=20: 141
-> 159, K=40: 102 -> 112); only the single Gaussian gained (407 -> 389). Fitting the codes
*before* the encoder's last ReLU and passing the samples through a ReLU measured better than
either (K=10: 159, K=20: 124, K=40: 104, Gaussian: 358).
"""

import numpy as np
from tqdm import tqdm

from aelab.errors import AelabError

from .base import Sampler, standardize_active
from .mixture import fit_gmm, select_n_components, whitened_axes
from .registry import SAMPLERS

__all__ = ["GMMSampler", "select_n_components"]


BASES = ("standardized", "whitened")


class GMMSampler(Sampler):
    """A full-covariance Gaussian mixture fitted to the codes (Ghosh et al., ICLR 2020).

    The mixture is fitted with scikit-learn's ``GaussianMixture`` on the non-constant dims,
    each standardized, so ``reg_covar`` is relative to each dimension's variance. The fitted
    parameters are stored in code units and used directly for sampling.

    Parameters
    ----------
    n_components : int or "auto"
        "auto" picks one with ``select_n_components`` (held-out log-likelihood), which chose 10
        for ``Autoencoder()`` codes of the 12k MNIST subset, before and after the final ReLU
        (20 for a sigmoid-output variant); Ghosh et al. used 10. The default, 1000 on 64
        principal components, is chosen by sample quality instead (``scripts/gmm_choices.py``).
        With EM to convergence (c7d5be5, an earlier classifier), on the seed run's codes (before
        the final ReLU, see `fitting`) the classifier FID of 5,000 decoded samples was 62 for 40
        components on all 128 dims, and on 32 principal components 55 (K=100), 49 (200), 48
        (400); 400 on 64 gave 41, against 30 for decoded training codes. With one EM iteration
        (``--components``): 400, 1000 and 2000 components on 64 dims score about 39, 31 and 29
        against a ceiling of 24, with samples' median distance to their nearest training image
        4.0, 3.7 and 3.4 (decoded validation codes 4.2, decoded training codes 2.4): more
        components come closer to the training codes, and 2000 (6 codes each) is about as far
        as that goes before samples start to copy. Held-out log-likelihood prefers far fewer
        components (about 50; 400 already scores worse than one Gaussian on held-out codes), so
        these large mixtures are chosen for their samples, not as density estimates.
    pca_dims : int or None
        Fit the mixture on this many principal components of the standardized codes and map it
        back to all dims, adding only ``reg_covar`` in the discarded directions (see
        ``_fit_standardized``); None: all dims. Default 64.
    basis : {"standardized", "whitened"}
        "standardized": each dim scaled to unit variance, then its top `pca_dims` principal
        components. "whitened": the principal axes of the codes themselves (one scale for all
        dims), the fewest holding 99.5% of the variance (at most `pca_dims`), each scaled to unit
        variance, as the neural samplers see them. The two differ for a VAE, whose
        posterior-collapsed dims carry almost no variance: standardizing blows them up to unit
        noise that takes the mixture's components.
    keep_variance : float
        With ``basis="whitened"``: the share of the codes' variance the kept axes hold, in (0, 1].
    random_state : int
    clip : {"observed", "none"}
    reg_covar : float
        Added to the covariance diagonals, in units of each dimension's variance. The default,
        0.01, keeps small components from collapsing onto a few codes (with 1e-6, 400
        components on 32 dims stopped after 6 EM iterations); 0.03 and 0.1 measured worse.
    max_iter : int
        EM iterations after the k-means start (each cluster's share, mean and covariance). The
        start does nearly all of the work: in a one-off check with 400 components on the seed
        run's codes the FID of 5,000 decoded samples was 39.0 after 1 iteration, 39.0 after 3,
        38.4 after 6 and 38.5 when EM ran to scikit-learn's tolerance (its default max_iter
        100), each iteration costing about as much as the k-means start
        (``scripts/gmm_choices.py --iterations`` measures it for the default).

    Attributes
    ----------
    n_components_ : int
    weights_ : ndarray (n_components,)
    means_ : ndarray (n_components, latent_dim), constant dims hold their constant
    covariances_ : ndarray (n_components, latent_dim, latent_dim), zero for constant dims
    active_dims_ : ndarray of int
    pca_components_, pca_covariances_, active_std_ : ndarrays, only with ``pca_dims``
        The principal axes (pca_dims, n_active) and each component's covariance on them
        (n_components, pca_dims, pca_dims), and the active dims' standard deviations:
        ``covariances_`` is computed from them, and only they are saved (33 MB instead of 131 MB
        for the default 1000 components on 128 dims).
    """

    name = "gmm"
    _state = ("weights_", "means_", "covariances_", "active_dims_")
    _compact_state = ("weights_", "means_", "pca_components_", "pca_covariances_", "active_std_",
                      "active_dims_")

    def __init__(self, n_components=1000, random_state=0, clip="none", reg_covar=0.01, pca_dims=64,
                 max_iter=1, basis="standardized", keep_variance=0.995):
        super().__init__(clip=clip)
        if basis not in BASES:
            raise AelabError(f"basis={basis!r} must be one of {', '.join(BASES)}")
        if not (isinstance(keep_variance, (int, float)) and not isinstance(keep_variance, bool)
                and 0 < keep_variance <= 1):
            raise AelabError(f"keep_variance={keep_variance!r} must be in (0, 1]")
        self.basis, self.keep_variance = basis, keep_variance
        is_int = isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool)
        if n_components != "auto" and not (is_int and n_components >= 1):
            raise AelabError(f"n_components={n_components!r} must be a positive integer or 'auto'")
        if pca_dims is not None and not (isinstance(pca_dims, (int, np.integer)) and pca_dims >= 1):
            raise AelabError(f"pca_dims={pca_dims!r} must be a positive integer or None")
        self.n_components, self.random_state, self.reg_covar = n_components, random_state, reg_covar
        if not (isinstance(max_iter, (int, np.integer)) and not isinstance(max_iter, bool) and max_iter >= 1):
            raise AelabError(f"max_iter={max_iter!r} must be a positive integer")
        self.pca_dims, self.max_iter = pca_dims, max_iter

    def _fit(self, codes):
        n, d = codes.shape
        k = self.n_components
        if k == "auto":
            k = select_n_components(codes, random_state=self.random_state, reg_covar=self.reg_covar)
        elif k > n:
            raise AelabError(f"n_components={k} is larger than the {n} codes to fit")
        for stale in ("pca_components_", "pca_covariances_", "active_std_"):  # from an earlier fit
            self.__dict__.pop(stale, None)
        active, mean, std, z = standardize_active(codes)
        if self.basis == "whitened" and len(active):  # one scale for all dims: their variance ratios stay
            std = np.full_like(std, np.sqrt(np.mean(std[active] ** 2)))
            z = (codes[:, active] - mean[active]) / std[active]
        self.active_dims_, self.n_components_ = active, int(k)
        self.weights_ = np.full(k, 1.0 / k)
        self.means_ = np.tile(mean, (k, 1))
        if not len(active):  # every dim constant: each component is that one point
            self.covariances_ = np.zeros((k, d, d))
            return
        means, covariances, self.weights_ = self._fit_standardized(z, k)
        self.means_[:, active] = means * std[active] + mean[active]
        if covariances is None:  # fitted on principal components: kept in that compact form
            self.active_std_ = std[active]
            self._expand_covariances()
        else:
            self._set_active_covariances(covariances, std[active])

    def _fit_standardized(self, z, k):
        """(means (k, a), covariances (k, a, a), weights (k,)) of a GMM on standardized codes z.

        With `pca_dims`, the mixture is fitted on the top principal components: covariances is
        None, and `pca_components_` W and `pca_covariances_` C hold it instead, mapped back by
        `_expand_covariances` to W^T C W + reg_covar I for each component. Spreading the
        discarded directions' mean variance (probabilistic PCA's s2, sklearn's
        `noise_variance_`) over every direction instead measured worse: FID 56 vs 53 for 200
        components on 32 dims of the seed run.
        """
        with tqdm(total=2, desc=f"fitting gmm on {len(z)} codes", unit="stage", leave=False,
                  disable=None) as bar:  # None: shown on a terminal only, never as \r noise in a log
            if self.basis == "whitened":
                back = whitened_axes(z, self.pca_dims, self.keep_variance)  # (p, a): unit axes -> codes
                u = (z - z.mean(0)) @ back.T / (back ** 2).sum(1)  # each axis's coordinate / its std
                gmm = fit_gmm(u, k, self.reg_covar, self.random_state, self.max_iter, bar)
                self.pca_components_, self.pca_covariances_ = back, gmm.covariances_
                return gmm.means_ @ back + z.mean(0), None, gmm.weights_
            if not self.pca_dims or self.pca_dims >= z.shape[1]:
                gmm = fit_gmm(z, k, self.reg_covar, self.random_state, self.max_iter, bar)
                return gmm.means_, gmm.covariances_, gmm.weights_
            from sklearn.decomposition import PCA

            pca = PCA(n_components=self.pca_dims, random_state=self.random_state).fit(z)
            gmm = fit_gmm(pca.transform(z), k, self.reg_covar, self.random_state, self.max_iter, bar)
        self.pca_components_, self.pca_covariances_ = pca.components_, gmm.covariances_
        return gmm.means_ @ pca.components_ + pca.mean_, None, gmm.weights_

    def _expand_covariances(self):
        """`covariances_` from the principal-component form (W^T C W + reg_covar I, per component)."""
        w = self.pca_components_                             # (pca_dims, a)
        floor = self.reg_covar * np.eye(w.shape[1])
        self._set_active_covariances(np.stack([w.T @ c @ w + floor for c in self.pca_covariances_]),
                                     self.active_std_)

    def _set_active_covariances(self, covariances, s):
        """Standardized covariances (k, a, a) into `covariances_` in code units (S C S)."""
        k, d, a = len(covariances), len(self.data_min_), self.active_dims_
        self.covariances_ = np.zeros((k, d, d))
        for j in range(k):
            self.covariances_[j][np.ix_(a, a)] = covariances[j] * np.outer(s, s)

    def _saved_state(self):
        return self._compact_state if hasattr(self, "pca_components_") else self._state

    def _state_layouts(self):
        return [self._state, self._compact_state]

    def _set_state(self, arrays):
        super()._set_state(arrays)
        self.n_components_ = len(self.weights_)

    def _finish_load(self):
        if hasattr(self, "pca_components_"):
            self._expand_covariances()

    def _draw(self, n, rng):
        a = self.active_dims_
        component = rng.choice(self.n_components_, size=n, p=self.weights_ / self.weights_.sum())
        out = self.means_[component].copy()  # (n, latent_dim)
        if len(a):
            noise = rng.standard_normal((n, len(a)))
            for j in range(self.n_components_):
                rows = component == j
                chol = np.linalg.cholesky(self.covariances_[j][np.ix_(a, a)])
                out[np.ix_(rows, a)] += noise[rows] @ chol.T
        return out


SAMPLERS.add("gmm", GMMSampler, "a Gaussian mixture fitted to the training codes (1000 components on 64 "
             "principal components by default; for a VAE 2500 on the axes that carry the variance)")
