"""`aelab explain`: measure a run's codes, write explain.md, explain.json and the figures.

    write_explain("runs/seed/explain", train_codes, train_labels, valid_codes, noise_codes)
    explain_run("runs/seed")     # the same, from a run folder
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from aelab.figures import latent as lf
from aelab.figures.plane import code_scatter, manifold_figure
from aelab.files import atomic_write_text, writable_dir
from aelab.plane import GRID, plane_grid

from .stats import (
    DEAD_STD,
    PCA_MAX_POINTS,
    active_corr,
    as_codes,
    distance_arrays,
    latent_stats,
    pca_2d,
    sig,
    summarize_distances,
)
from .verdict import numbers_table, verdict

__all__ = ["write_explain", "explain_run"]


def write_explain(out_dir, train_codes, train_labels, valid_codes, noise_codes,
                  decoded_noise_images=None, decoded_real_images=None, decode=None) -> Path:
    """Write explain.json, the figures (PNG) and explain.md into out_dir; return the md path.

    noise_codes are the N(0, I) codes that were fed to the decoder; the decoded images, when
    given (shape (n, 784) or (n, 28, 28), values in [0, 1]), are shown side by side. Codes of 2
    dims are drawn as they are (no PCA), and with `decode` (codes (m, 2) -> images (m, 28, 28))
    the decoder's images over the code plane too.
    """
    out_dir = Path(out_dir)
    writable_dir(out_dir)
    train = as_codes(train_codes, "train_codes")
    labels = np.asarray(train_labels).reshape(-1)
    stats = latent_stats(train, labels)
    arrays = distance_arrays(train, valid_codes, noise_codes)
    dist = summarize_distances(arrays)

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
    if train.shape[1] == 2:
        keep = np.arange(train.shape[0])
        if keep.size > PCA_MAX_POINTS:
            keep = np.sort(np.random.default_rng(0).choice(keep, PCA_MAX_POINTS, replace=False))
        figures.append(("codes_2d.png", "Training codes in the code plane itself (2 dims: no PCA), by digit.",
                        code_scatter(train[keep], labels[keep], "Training codes, by digit")))
        if decode is not None:
            grid, extent = plane_grid(train)
            images = np.asarray(decode(grid)).reshape(GRID, GRID, 28, 28)
            figures.append(("manifold.png", "The decoder over the code plane: the codes' 1st-99th "
                            "percentiles on each axis.", manifold_figure(images, extent)))
    elif stats["active_dims"] >= 1:
        points, ratio = pca_2d(train)
        pca = [sig(r) for r in ratio]
        keep = np.arange(train.shape[0])
        if keep.size > PCA_MAX_POINTS:
            keep = np.sort(np.random.default_rng(0).choice(keep, PCA_MAX_POINTS, replace=False))
        caption = "Training codes on their first two principal components, by digit."
        figures.append(("pca.png", caption, lf.pca_scatter(points[keep], labels[keep], ratio)))
    active = np.flatnonzero(train.std(axis=0) >= DEAD_STD)
    corr = active_corr(train, active)
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
    atomic_write_text(out_dir / "explain.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    md = ["# Why N(0, I) noise decodes to no digit", "", text, "", "## The numbers", "",
          numbers_table(stats, dist), "", "## Figures", ""]
    for name, caption, _ in figures:
        md += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    md_path = out_dir / "explain.md"
    atomic_write_text(md_path, "\n".join(md))
    return md_path


def explain_run(run_dir: str | Path, seed: int = 0, device: str = "cpu") -> Path:
    """Measure why N(0, I) codes decode to no digits; write `RUN_DIR/explain/` and return explain.md."""
    from aelab.models import model_warning
    from aelab.run import load_run
    from aelab.samplers.fitting import run_data

    run = load_run(run_dir, device=device)
    if (warning := model_warning(run.config.model)):
        print(f"aelab: warning: {warning}", file=sys.stderr)
    data = run_data(run)
    train_codes = run.encode(data.train_images).numpy()
    valid_codes = run.encode(data.test_images).numpy()
    noise = np.random.default_rng(seed).standard_normal(valid_codes.shape).astype(np.float32)
    return write_explain(run.path / "explain", train_codes, data.train_labels.numpy(), valid_codes, noise,
                         decoded_noise_images=run.decode(noise[:32]).numpy(),
                         decoded_real_images=run.decode(valid_codes[:32]).numpy(),
                         decode=lambda codes: run.decode(codes).numpy())
