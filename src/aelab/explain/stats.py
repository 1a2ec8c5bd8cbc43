"""Latent-space evidence behind "why does N(0, I) noise decode to no digit?".

The decoder of a plain autoencoder is only ever trained on codes that the encoder produces.
This module measures how far those codes are from N(0, I): their sign and sparsity (a final
ReLU makes them non-negative, often exactly 0), dead dimensions, per-dimension scale,
correlations, norms, and finally where N(0, I) noise lands relative to the training codes.
Pure computation; the words are in `verdict.py`, the plots in `aelab.figures.latent`.

    stats = latent_stats(train_codes, train_labels)
    dists = noise_vs_real_distances(train_codes, valid_codes, noise_codes)
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr
from sklearn.decomposition import PCA

from aelab.checks import require_finite
from aelab.errors import AelabError
from aelab.metrics import nearest_distances

__all__ = ["latent_stats", "noise_vs_real_distances", "pca_2d", "distance_arrays", "summarize_distances",
           "active_corr", "as_codes", "sig", "DEAD_STD", "PCA_MAX_POINTS"]

DEAD_STD = 1e-6  # a dimension whose std is below this is constant: "dead"
CORR_THRESHOLD = 0.3  # |r| above this counts as a correlated pair
PCA_MAX_POINTS = 5000  # points drawn in the PCA scatter (all codes are used for fitting)


def sig(x: float, digits: int = 4) -> float | None:
    """Round to `digits` significant digits for JSON; NaN becomes None."""
    x = float(x)
    return None if not math.isfinite(x) else float(f"{x:.{digits}g}")


def as_codes(codes, name: str) -> np.ndarray:
    """Validate a (n_samples, n_dims) finite array and return it as float64."""
    arr = np.asarray(codes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise AelabError(f"{name} must have shape (n_samples >= 2, n_dims), got {arr.shape}")
    return require_finite(arr, f"{name} contains NaN or inf; check the encoder run that made it")


def active_corr(codes: np.ndarray, active: np.ndarray) -> np.ndarray | None:
    """Correlation matrix (n_active, n_active) of the non-dead dims, or None if < 2."""
    if active.size < 2:
        return None
    return np.corrcoef(codes[:, active], rowvar=False)


def latent_stats(codes: np.ndarray, labels: np.ndarray) -> dict:
    """How the encoder's codes differ from N(0, I), as a JSON-able dict.

    Parameters
    ----------
    codes : array of shape (n_samples, n_dims)
        Codes of the training images (what the decoder learned from).
    labels : array of shape (n_samples,)
        Digit labels; used for the share of code variance that lies between digits.
    """
    codes = as_codes(codes, "codes")
    labels = np.asarray(labels).reshape(-1)
    n, d = codes.shape
    if labels.shape[0] != n:
        raise AelabError(f"labels has {labels.shape[0]} entries but codes has {n} rows")

    mean = codes.mean(axis=0)  # (d,)
    std = codes.std(axis=0)  # (d,)
    dead = np.flatnonzero(std < DEAD_STD)
    active = np.flatnonzero(std >= DEAD_STD)
    lo, hi = codes.min(axis=0), codes.max(axis=0)
    # N(0,1) mass per dim below the smallest code and above the largest one: where codes never go
    below = ndtr(lo)
    outside = below + (1.0 - ndtr(hi))

    corr = active_corr(codes, active)
    if corr is not None:
        off = np.abs(corr[~np.eye(corr.shape[0], dtype=bool)])
        share_above = (off > CORR_THRESHOLD).mean()
        corr_stats = {"mean_abs": sig(off.mean()), "share_above": sig(share_above)}
    else:
        corr_stats = {"mean_abs": None, "share_above": None}

    # share of total variance that lies between digit means (R^2 of "code ~ label")
    total_ss = ((codes - mean) ** 2).sum()
    between_ss = 0.0
    for label in np.unique(labels):
        rows = codes[labels == label]
        between_ss += rows.shape[0] * ((rows.mean(axis=0) - mean) ** 2).sum()
    norms = np.linalg.norm(codes, axis=1)

    return {
        "n_samples": int(n),
        "n_dims": int(d),
        "zero_share": sig((codes == 0).mean()),
        "negative_share": sig((codes < 0).mean()),
        "normal_negative_share": 0.5,
        "dead_dims": {"count": int(dead.size), "dims": dead.tolist()},
        "active_dims": int(active.size),
        "mean": [sig(v) for v in mean],
        "std": [sig(v) for v in std],
        "median_abs_mean": sig(np.median(np.abs(mean))),
        "median_std": sig(np.median(std)),
        "dims_std_in_0.5_2": int(((std >= 0.5) & (std <= 2.0)).sum()),
        "normal_mass_below_min": sig(below.mean()),
        "normal_mass_outside_support": sig(outside.mean()),
        "corr_active": {"threshold": CORR_THRESHOLD, **corr_stats},
        "label_variance_share": sig(between_ss / total_ss) if total_ss > 0 else None,
        "code_norm_median": sig(np.median(norms)),
        "normal_norm_expected": sig(math.sqrt(d)),
    }


def distance_arrays(train, real, noise) -> dict[str, np.ndarray]:
    """Nearest-training-code distances for real held-out codes, noise, and noise clipped at 0."""
    train = as_codes(train, "train_codes")
    real = as_codes(real, "query_codes_real")
    noise = as_codes(noise, "query_codes_noise")
    for name, arr in (("query_codes_real", real), ("query_codes_noise", noise)):
        if arr.shape[1] != train.shape[1]:
            raise AelabError(f"{name} has {arr.shape[1]} dims but train_codes has {train.shape[1]}")
    return {
        "real": nearest_distances(real, train).double().numpy(),
        "noise": nearest_distances(noise, train).double().numpy(),
        "noise_clipped": nearest_distances(np.maximum(noise, 0.0), train).double().numpy(),
    }


def summarize_distances(arrays: dict[str, np.ndarray]) -> dict:
    summary = {}
    for key, dist in arrays.items():
        p10, median, p90 = np.percentile(dist, [10, 50, 90])
        summary[key] = {"n": int(dist.size), "median": sig(median), "mean": sig(dist.mean()),
                        "p10": sig(p10), "p90": sig(p90)}
    real_median = float(np.median(arrays["real"]))
    for key in ("noise", "noise_clipped"):
        ratio = float(np.median(arrays[key])) / real_median if real_median > 0 else math.inf
        summary[f"ratio_{key}_to_real"] = sig(ratio)
    return summary


def noise_vs_real_distances(train_codes, query_codes_real, query_codes_noise) -> dict:
    """Where noise lands: distance from each query code to its nearest training code.

    Returns medians (and p10/p90/mean) for held-out real codes, N(0, I) codes, and the same
    noise clipped at 0 (projected into a ReLU code's support), plus the ratios of the noise
    medians to the real one. A ratio well above 1 means the decoder must extrapolate.
    """
    return summarize_distances(distance_arrays(train_codes, query_codes_real, query_codes_noise))


def pca_2d(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project codes onto their first two principal components: (n, 2) points, (2,) var ratio."""
    codes = as_codes(codes, "codes")
    pca = PCA(n_components=2, svd_solver="randomized", random_state=0).fit(codes)
    return pca.transform(codes), pca.explained_variance_ratio_


