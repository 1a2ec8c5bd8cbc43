"""Latent-space evidence behind "why does N(0, I) noise decode to no digit?".

The decoder of a plain autoencoder is only ever trained on codes that the encoder produces.
This module measures how far those codes are from N(0, I): their sign and sparsity (a final
ReLU makes them non-negative, often exactly 0), dead dimensions, per-dimension scale,
correlations, norms, and finally where N(0, I) noise lands relative to the training codes.
Pure computation plus markdown; the plots live in `latent_figures.py`.

    stats = latent_stats(train_codes, train_labels)
    dists = noise_vs_real_distances(train_codes, valid_codes, noise_codes)
    print(verdict(stats, dists))
    write_explain("runs/mnist/explain", train_codes, train_labels, valid_codes, noise_codes)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from scipy.special import ndtr
from sklearn.decomposition import PCA

from aelab import latent_figures as lf
from aelab.errors import AelabError

__all__ = ["latent_stats", "noise_vs_real_distances", "pca_2d", "verdict", "write_explain"]

DEAD_STD = 1e-6  # a dimension whose std is below this is constant: "dead"
CORR_THRESHOLD = 0.3  # |r| above this counts as a correlated pair
PCA_MAX_POINTS = 5000  # points drawn in the PCA scatter (all codes are used for fitting)


def _sig(x: float, digits: int = 4) -> float | None:
    """Round to `digits` significant digits for JSON; NaN becomes None."""
    x = float(x)
    return None if not math.isfinite(x) else float(f"{x:.{digits}g}")


def _as_codes(codes, name: str) -> np.ndarray:
    """Validate a (n_samples, n_dims) finite array and return it as float64."""
    arr = np.asarray(codes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise AelabError(f"{name} must have shape (n_samples >= 2, n_dims), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise AelabError(f"{name} contains NaN or inf; check the encoder run that made it")
    return arr


def _active_corr(codes: np.ndarray, active: np.ndarray) -> np.ndarray | None:
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
    codes = _as_codes(codes, "codes")
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

    corr = _active_corr(codes, active)
    if corr is not None:
        off = np.abs(corr[~np.eye(corr.shape[0], dtype=bool)])
        share_above = (off > CORR_THRESHOLD).mean()
        corr_stats = {"mean_abs": _sig(off.mean()), "share_above": _sig(share_above)}
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
        "zero_share": _sig((codes == 0).mean()),
        "negative_share": _sig((codes < 0).mean()),
        "normal_negative_share": 0.5,
        "dead_dims": {"count": int(dead.size), "dims": dead.tolist()},
        "active_dims": int(active.size),
        "mean": [_sig(v) for v in mean],
        "std": [_sig(v) for v in std],
        "median_abs_mean": _sig(np.median(np.abs(mean))),
        "median_std": _sig(np.median(std)),
        "dims_std_in_0.5_2": int(((std >= 0.5) & (std <= 2.0)).sum()),
        "normal_mass_below_min": _sig(below.mean()),
        "normal_mass_outside_support": _sig(outside.mean()),
        "corr_active": {"threshold": CORR_THRESHOLD, **corr_stats},
        "label_variance_share": _sig(between_ss / total_ss) if total_ss > 0 else None,
        "code_norm_median": _sig(np.median(norms)),
        "normal_norm_expected": _sig(math.sqrt(d)),
    }


def _nearest(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Euclidean distance (n_queries,) from each query to its nearest reference row."""
    ref = torch.from_numpy(reference.astype(np.float32))
    chunk = max(1, 2**25 // ref.shape[0])  # keeps each (chunk, n_ref) block near 128 MB
    out = []
    for start in range(0, queries.shape[0], chunk):
        q = torch.from_numpy(queries[start : start + chunk].astype(np.float32))
        out.append(torch.cdist(q, ref).min(dim=1).values)
    return torch.cat(out).double().numpy()


def _distance_arrays(train, real, noise) -> dict[str, np.ndarray]:
    """Nearest-training-code distances for real held-out codes, noise, and noise clipped at 0."""
    train = _as_codes(train, "train_codes")
    real = _as_codes(real, "query_codes_real")
    noise = _as_codes(noise, "query_codes_noise")
    for name, arr in (("query_codes_real", real), ("query_codes_noise", noise)):
        if arr.shape[1] != train.shape[1]:
            raise AelabError(f"{name} has {arr.shape[1]} dims but train_codes has {train.shape[1]}")
    return {
        "real": _nearest(train, real),
        "noise": _nearest(train, noise),
        "noise_clipped": _nearest(train, np.maximum(noise, 0.0)),
    }


def _summarize(arrays: dict[str, np.ndarray]) -> dict:
    summary = {}
    for key, dist in arrays.items():
        p10, median, p90 = np.percentile(dist, [10, 50, 90])
        summary[key] = {"n": int(dist.size), "median": _sig(median), "mean": _sig(dist.mean()),
                        "p10": _sig(p10), "p90": _sig(p90)}
    real_median = float(np.median(arrays["real"]))
    for key in ("noise", "noise_clipped"):
        ratio = float(np.median(arrays[key])) / real_median if real_median > 0 else math.inf
        summary[f"ratio_{key}_to_real"] = _sig(ratio)
    return summary


def noise_vs_real_distances(train_codes, query_codes_real, query_codes_noise) -> dict:
    """Where noise lands: distance from each query code to its nearest training code.

    Returns medians (and p10/p90/mean) for held-out real codes, N(0, I) codes, and the same
    noise clipped at 0 (projected into a ReLU code's support), plus the ratios of the noise
    medians to the real one. A ratio well above 1 means the decoder must extrapolate.
    """
    return _summarize(_distance_arrays(train_codes, query_codes_real, query_codes_noise))


def pca_2d(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project codes onto their first two principal components: (n, 2) points, (2,) var ratio."""
    codes = _as_codes(codes, "codes")
    pca = PCA(n_components=2, svd_solver="randomized", random_state=0).fit(codes)
    return pca.transform(codes), pca.explained_variance_ratio_


def _pct(share: float) -> str:
    """0.613 -> '61%'; small non-zero shares keep two significant digits."""
    if share == 0:
        return "0%"
    if share < 0.005:
        return f"{100 * share:.2g}%"
    return f"{100 * share:.0f}%"


def verdict(stats: dict, distances: dict) -> str:
    """The "why" in plain words, stating only what the measured numbers support."""
    d, zero, neg = stats["n_dims"], stats["zero_share"], stats["negative_share"]
    parts = [(f"The decoder was only ever trained on codes from the encoder "
              f"({stats['n_samples']} training codes of {d} dims).")]
    if neg == 0 and zero > 0:
        parts.append(f"Those codes are never negative and {_pct(zero)} of their values are "
                     "exactly 0 (the mark of a final ReLU), while N(0,1) puts 50% of its mass "
                     "below 0.")
    elif neg < 0.1:
        parts.append(f"Only {_pct(neg)} of code values are negative ({_pct(zero)} are exactly 0), "
                     "while N(0,1) puts 50% of its mass below 0.")
    else:
        parts.append(f"{_pct(neg)} of code values are negative and {_pct(zero)} are exactly 0 "
                     "(N(0,1): 50% and 0%).")
    dead = stats["dead_dims"]["count"]
    if dead:
        parts.append(f"{dead} of {d} dims are dead (the same value for every training image), "
                     "yet noise varies them as much as any other.")
    med_std, med_mean = stats["median_std"], stats["median_abs_mean"]
    in_range = stats["dims_std_in_0.5_2"]
    if in_range == d and med_mean < 0.25:
        parts.append(f"Per dim, the scale is close to N(0,1): every std is between 0.5 and 2 "
                     f"(median {med_std:.2g}) and the median |mean| is {med_mean:.2g}.")
    else:
        scale = ("Every dim has a std between 0.5 and 2" if in_range == d else
                 f"Only {in_range} of {d} dims have a std between 0.5 and 2")
        centre = ("the dims are off-centre" if med_mean >= 0.25 else "the dims are roughly centred")
        parts.append(f"{scale} (median {med_std:.2g}, N(0,1): 1), and {centre} "
                     f"(median |mean| {med_mean:.2g}, N(0,1): 0).")
    outside = stats["normal_mass_outside_support"]
    if outside > 0.05:
        parts.append(f"On average {_pct(outside)} of a dim's N(0,1) mass falls outside the range "
                     "the codes ever take.")
    norm, normal_norm = stats["code_norm_median"], stats["normal_norm_expected"]
    if not 0.8 <= norm / normal_norm <= 1.25:
        parts.append(f"The median code norm is {norm:.3g}, against about {normal_norm:.3g} "
                     f"for N(0,I) noise.")
    corr = stats["corr_active"]
    if corr["mean_abs"] is not None and corr["share_above"] > 0.05:
        parts.append(f"The active dims are correlated (mean |r| {corr['mean_abs']:.2f}, "
                     f"{_pct(corr['share_above'])} of pairs above {corr['threshold']}), while "
                     "N(0,I) draws every dim independently.")
    lvs = stats.get("label_variance_share")
    if lvs is not None and lvs > 0.2:
        parts.append(f"The codes are organised by digit ({_pct(lvs)} of their variance lies "
                     "between digit means), a structure N(0,I) knows nothing about.")
    ratio, clipped = distances["ratio_noise_to_real"], distances["ratio_noise_clipped_to_real"]
    if ratio is None:
        parts.append("Held-out real codes coincide with training codes (median distance 0), "
                     "so no distance ratio can be formed.")
    elif ratio > 1.5:
        parts.append(f"Measured directly, N(0,I) noise lands a median {ratio:.1f}x farther from "
                     "the nearest training code than a held-out real code does, so the decoder is "
                     "asked to extrapolate to codes it never saw.")
        explained = (ratio - clipped) / (ratio - 1)
        if explained >= 0.1:
            parts.append(f"Clipping the noise at 0 (fixing the sign alone) brings that to "
                         f"{clipped:.1f}x, closing about {_pct(min(explained, 1.0))} of the gap.")
        else:
            parts.append(f"Clipping the noise at 0 barely helps ({clipped:.1f}x), so the sign "
                         "is not the main mismatch.")
    else:
        parts.append(f"N(0,I) noise lands only {ratio:.1f}x as far from the nearest training code "
                     "as a held-out real code, so by this measure noise is not out of reach.")
    return " ".join(parts)


def _numbers_table(stats: dict, dist: dict) -> str:
    """Markdown table: each measure for the encoder's codes beside its N(0, I) value."""
    d, corr = stats["n_dims"], stats["corr_active"]
    ratio, clipped = dist["ratio_noise_to_real"], dist["ratio_noise_clipped_to_real"]
    rows = [
        ("values exactly 0", _pct(stats["zero_share"]), "0%"),
        ("values < 0", _pct(stats["negative_share"]), "50%"),
        ("dead dims", f"{stats['dead_dims']['count']} of {d}", "0"),
        ("median std per dim", f"{stats['median_std']:.3g}", "1"),
        ("median abs(mean) per dim", f"{stats['median_abs_mean']:.3g}", "0"),
        ("dims with std in [0.5, 2]", f"{stats['dims_std_in_0.5_2']} of {d}", f"{d} of {d}"),
        ("N(0,1) mass outside the codes' range", _pct(stats["normal_mass_outside_support"]), ""),
        ("mean abs(r) between active dims",
         "n/a" if corr["mean_abs"] is None else f"{corr['mean_abs']:.3f}", "0"),
        ("median norm", f"{stats['code_norm_median']:.3g}", f"{stats['normal_norm_expected']:.3g}"),
        ("median distance to nearest training code", f"{dist['real']['median']:.3g} (held-out)",
         f"{dist['noise']['median']:.3g} ({_ratio(ratio)})"),
        ("same, noise clipped at 0", "",
         f"{dist['noise_clipped']['median']:.3g} ({_ratio(clipped)})"),
    ]
    lines = ["| measure | encoder codes | N(0,I) |", "|---|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} | {c} |" for a, b, c in rows])


def _ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x held-out"


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_explain(out_dir, train_codes, train_labels, valid_codes, noise_codes,
                  decoded_noise_images=None, decoded_real_images=None) -> Path:
    """Write explain.json, the figures (PNG) and explain.md into out_dir; return the md path.

    noise_codes are the N(0, I) codes that were fed to the decoder; the decoded images, when
    given (shape (n, 784) or (n, 28, 28), values in [0, 1]), are shown side by side.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = _as_codes(train_codes, "train_codes")
    labels = np.asarray(train_labels).reshape(-1)
    stats = latent_stats(train, labels)
    arrays = _distance_arrays(train, valid_codes, noise_codes)
    dist = _summarize(arrays)

    figures = [  # (file name, caption, figure)
        ("code_histogram.png", "All code values against the N(0,1) density (log scale).",
         lf.code_histogram(train)),
        ("dim_stats.png", "Per-dimension mean and std, sorted by std, against N(0,1)'s 0 and 1.",
         lf.dim_stats(train.mean(axis=0), train.std(axis=0))),
        ("noise_distances.png", ("Distance to the nearest training code: held-out real "
                                 "codes, N(0,I) noise, and the noise clipped at 0."),
         lf.distance_histogram(arrays, {k: dist[k]["median"] for k in arrays})),
    ]
    pca = None
    if stats["active_dims"] >= 1:
        points, ratio = pca_2d(train)
        pca = [_sig(r) for r in ratio]
        keep = np.arange(train.shape[0])
        if keep.size > PCA_MAX_POINTS:
            keep = np.sort(np.random.default_rng(0).choice(keep, PCA_MAX_POINTS, replace=False))
        caption = "Training codes on their first two principal components, by digit."
        figures.append(("pca.png", caption, lf.pca_scatter(points[keep], labels[keep], ratio)))
    active = np.flatnonzero(train.std(axis=0) >= DEAD_STD)
    corr = _active_corr(train, active)
    if corr is not None:
        figures.append(("correlation.png", "Correlation between the active code dimensions.",
                        lf.correlation_heatmap(corr, active)))
    rows = {name: imgs for name, imgs in (("decoded N(0,I) noise", decoded_noise_images),
                                          ("decoded real codes", decoded_real_images))
            if imgs is not None}
    if rows:
        figures.append(("decoded.png", "What the decoder makes of each kind of code.",
                        lf.image_rows(rows)))
    for name, _, fig in figures:
        lf.save_figure(fig, out_dir / name)

    text = verdict(stats, dist)
    report = {"stats": stats, "distances": dist, "pca_explained_variance_ratio": pca,
              "figures": [name for name, _, _ in figures], "verdict": text}
    _write_text(out_dir / "explain.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    md = ["# Why N(0, I) noise decodes to no digit", "", text, "", "## The numbers", "",
          _numbers_table(stats, dist), "", "## Figures", ""]
    for name, caption, _ in figures:
        md += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    md_path = out_dir / "explain.md"
    _write_text(md_path, "\n".join(md))
    return md_path
