"""Fitting one Gaussian mixture: the k-means start, EM, the whitened basis, choosing a size.

The `gmm` sampler (`gmm.py`) calls these; they hold no state of their own.
"""

import warnings

import numpy as np

from aelab.errors import AelabError

from .base import axes_holding, check_codes, principal_axes, standardize_active

__all__ = ["fit_gmm", "kmeans_start", "select_n_components", "whitened_axes"]


def kmeans_start(z, k, reg_covar, random_state):
    """(weights (k,), means (k, p), precisions (k, p, p)) of k-means clusters of z (n, p).

    What scikit-learn's own ``init_params="kmeans"`` computes (each cluster's share, mean and
    covariance + reg_covar I), done here so that the two stages can report progress apart.
    """
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=k, n_init=1, random_state=random_state).fit(z).labels_
    counts = np.bincount(labels, minlength=k)
    p = z.shape[1]
    means, precisions = np.tile(z.mean(0), (k, 1)), np.tile(np.eye(p) / reg_covar, (k, 1, 1))
    for j in np.flatnonzero(counts):  # k-means leaves no cluster empty; a lone point gets reg_covar I
        members = z[labels == j]
        means[j] = members.mean(0)
        cov = np.cov(members, rowvar=False, bias=True).reshape(p, p) if counts[j] > 1 else 0
        precisions[j] = np.linalg.inv(cov + reg_covar * np.eye(p))
    return np.maximum(counts, 1) / np.maximum(counts, 1).sum(), means, precisions


def fit_gmm(z, n_components, reg_covar, random_state, max_iter=100, bar=None):
    """Fit sklearn's full-covariance GMM on standardized codes z of shape (n, d_active).

    It starts from k-means clusters and runs at most `max_iter` EM iterations; `bar`, a tqdm
    bar, is told when each stage starts.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture  # here, not at the top: sklearn takes 0.8 s to import

    if bar is not None:
        bar.set_postfix_str(f"k-means, {n_components} clusters on {z.shape[1]} dims")
    weights, means, precisions = kmeans_start(z, n_components, reg_covar, random_state)
    if bar is not None:
        bar.update()
        bar.set_postfix_str(f"EM, at most {max_iter} iterations")
    gmm = GaussianMixture(n_components=n_components, covariance_type="full", reg_covar=reg_covar,
                          random_state=random_state, max_iter=max_iter, init_params="random_from_data",
                          weights_init=weights, means_init=means, precisions_init=precisions)
    try:
        with warnings.catch_warnings():  # a capped max_iter is the setting, not a failure
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm.fit(z)
    except ValueError as exc:  # sklearn: "ill-defined empirical covariance"
        raise AelabError(f"GMM fit with n_components={n_components} failed ({exc}); "
                         f"increase reg_covar={reg_covar!r} or lower n_components") from exc
    if bar is not None:
        bar.update()
    return gmm


def select_n_components(codes, candidates=(1, 2, 5, 10, 20, 40), random_state=0, reg_covar=1e-6):
    """Choose the number of GMM components by held-out average log-likelihood.

    A random 20% of the codes is held out; a full-covariance GMM is fitted on the other 80% for
    every candidate, and the candidate with the highest mean log-likelihood per held-out code
    wins. Candidates larger than the fitting split are skipped.

    Parameters
    ----------
    codes : array of shape (n_samples, latent_dim)
    candidates : sequence of int
    random_state : int
        Seeds both the split and the GMM initialisation.
    reg_covar : float
        Added to the covariance diagonals, in units of each dimension's variance.

    Returns
    -------
    int
    """
    codes = check_codes(codes)
    _, _, _, z = standardize_active(codes)
    if z.shape[1] == 0:
        return 1  # every dimension is constant: one component is all there is
    order = np.random.default_rng(random_state).permutation(len(z))
    n_valid = max(1, len(z) // 5)
    valid, train = z[order[:n_valid]], z[order[n_valid:]]
    scores = {k: fit_gmm(train, k, reg_covar, random_state).score(valid)
              for k in candidates if 1 <= k <= len(train)}
    if not scores:
        raise AelabError(f"no candidate in {tuple(candidates)!r} fits {len(train)} codes")
    return max(scores, key=scores.get)




def whitened_axes(z, most, keep_variance):
    """(p, a) the codes' leading principal axes, each times its std: the rows map unit-variance
    coordinates back to codes. p: the fewest axes holding `keep_variance`, at most `most`."""
    variances, axes = principal_axes(z)
    p = min(axes_holding(variances, keep_variance), most or len(variances))
    return axes[:p] * np.sqrt(np.maximum(variances[:p], np.finfo(float).tiny))[:, None]
