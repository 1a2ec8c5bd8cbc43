"""The words of `aelab explain`: a verdict and a table, every claim conditional on the numbers.

    print(verdict(latent_stats(codes, labels), noise_vs_real_distances(codes, valid, noise)))
"""

from __future__ import annotations

__all__ = ["verdict", "numbers_table"]


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


def numbers_table(stats: dict, dist: dict) -> str:
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
