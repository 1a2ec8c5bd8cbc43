"""Figures of a latent space next to N(0, I): each function takes arrays, returns a Figure.

Figures are built with `matplotlib.figure.Figure` (Agg), never pyplot, so nothing global is
touched and nothing needs closing. They compute only what drawing needs; the metrics come
from `explain.py`. Callers save:

    fig = code_histogram(codes)          # codes: (n_samples, n_dims)
    save_figure(fig, "runs/mnist/explain/code_histogram.png")
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from aelab.errors import AelabError

from . import save

__all__ = ["code_histogram", "correlation_heatmap", "dim_stats", "distance_histogram",
           "image_rows", "pca_scatter", "save_figure"]

DPI = 120
CODE_COLOR, NORMAL_COLOR = "tab:blue", "tab:orange"


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)


def save_figure(fig: Figure, path, dpi: int = DPI) -> Path:
    """`aelab.figures.save_figure` at this module's dpi."""
    return save.save_figure(fig, path, dpi=dpi)


def code_histogram(codes: np.ndarray, bins: int = 120) -> Figure:
    """Histogram (density, log y) of every code value beside the N(0,1) density."""
    values = np.asarray(codes, dtype=np.float64).reshape(-1)
    lo, hi = min(values.min(), -4.0), max(values.max(), 4.0)
    density, edges = np.histogram(values, bins=bins, range=(lo, hi), density=True)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.stairs(density, edges, fill=True, alpha=0.6, color=CODE_COLOR,
              label=f"code values ({values.size:,})")
    x = np.linspace(lo, hi, 400)
    ax.plot(x, _normal_pdf(x), color=NORMAL_COLOR, lw=2, label="N(0,1) density")
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    positive = density[density > 0]
    if positive.size:
        ax.set_ylim(bottom=max(positive.min() * 0.5, 1e-5))
    ax.set_xlabel("value")
    ax.set_ylabel("density (log scale)")
    ax.set_title("Code values vs N(0,1): the spike at 0 and the missing negative half")
    ax.legend()
    return fig


def dim_stats(means: np.ndarray, stds: np.ndarray) -> Figure:
    """Per-dimension std and mean, dims sorted by std (largest first), vs N(0,1)'s 1 and 0."""
    means, stds = np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)
    order = np.argsort(-stds, kind="stable")
    x = np.arange(stds.size)
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.axhspan(0.5, 2.0, color=NORMAL_COLOR, alpha=0.08, label="std within [0.5, 2]")
    ax.plot(x, stds[order], color=CODE_COLOR, marker=".", lw=1, label="std of the dim")
    ax.plot(x, means[order], color="tab:green", marker=".", lw=1, label="mean of the dim")
    ax.axhline(1.0, color=NORMAL_COLOR, lw=1.5, ls="--", label="N(0,1) std = 1")
    ax.axhline(0.0, color=NORMAL_COLOR, lw=1.5, ls=":", label="N(0,1) mean = 0")
    dead = int((stds < 1e-6).sum())
    ax.set_xlabel("code dimension, sorted by std" + (f" ({dead} dead dims at the right)" if dead else ""))
    ax.set_ylabel("value")
    ax.set_xlim(-0.5, stds.size - 0.5)
    ax.set_title("Per-dimension scale of the codes vs N(0,1)")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def pca_scatter(points: np.ndarray, labels: np.ndarray,
                explained: np.ndarray | None = None) -> Figure:
    """Scatter of (n, 2) PCA points coloured by label, one legend entry per digit.

    Points are drawn in a random order (not class by class), so no digit hides the others.
    """
    points, labels = np.asarray(points), np.asarray(labels).reshape(-1)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    classes = list(np.unique(labels))
    order = np.random.default_rng(0).permutation(len(labels))
    colours = np.array([cmap(classes.index(v) % 10) for v in labels[order]]).reshape(-1, 4)
    ax.scatter(points[order, 0], points[order, 1], s=3, alpha=0.45, c=colours, rasterized=True)
    for i, label in enumerate(classes):  # legend entries only
        ax.scatter([], [], s=12, color=cmap(i % 10), label=str(label))
    names = ["PC1", "PC2"]
    if explained is not None:
        names = [f"PC{i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(explained[:2])]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title("Training codes, first two principal components")
    ax.legend(title="digit", markerscale=3, fontsize="small", loc="best")
    return fig


def distance_histogram(distances: dict[str, np.ndarray],
                       medians: dict[str, float] | None = None, bins: int = 60) -> Figure:
    """Overlaid histograms of nearest-training-code distances, one per kind of query code.

    distances maps a name ("real", "noise", "noise_clipped") to an (n,) array; medians, when
    given, are drawn as dashed lines in the same colours.
    """
    names = {"real": "held-out real codes", "noise": "N(0,I) noise",
             "noise_clipped": "N(0,I) noise clipped at 0"}
    colors = {"real": CODE_COLOR, "noise": NORMAL_COLOR, "noise_clipped": "tab:purple"}
    hi = max(float(np.max(v)) for v in distances.values())
    edges = np.linspace(0.0, hi * 1.02 if hi > 0 else 1.0, bins + 1)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for key, dist in distances.items():
        color = colors.get(key)
        counts, _ = np.histogram(dist, bins=edges)
        ax.stairs(counts / max(dist.size, 1), edges, fill=True, alpha=0.35, color=color)
        ax.stairs(counts / max(dist.size, 1), edges, color=color, lw=1.5,
                  label=names.get(key, key))
        if medians is not None and medians.get(key) is not None:
            ax.axvline(medians[key], color=color, ls="--", lw=1.2)
    ax.set_xlabel("Euclidean distance to the nearest training code")
    ax.set_ylabel("share of query codes")
    title = "Where noise lands"
    if medians is not None:
        title += " (dashed: medians)"
    ax.set_title(title)
    ax.legend()
    return fig


def correlation_heatmap(corr: np.ndarray, dims: np.ndarray | None = None) -> Figure:
    """Heatmap of a (k, k) correlation matrix; dims gives the code dimension of each row."""
    corr = np.asarray(corr)
    fig = Figure(figsize=(6, 5.2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="correlation r")
    if dims is not None and len(dims) <= 16:
        ticks = np.arange(len(dims))
        ax.set_xticks(ticks, [str(d) for d in dims])
        ax.set_yticks(ticks, [str(d) for d in dims])
    ax.set_xlabel("active code dimension (index among active dims)")
    ax.set_ylabel("active code dimension")
    ax.set_title("Correlation between active dims (N(0,I): identity)")
    return fig


def _as_square_images(images: np.ndarray) -> np.ndarray:
    """(n, side*side), (n, side, side) or (n, 1, side, side) -> (n, side, side)."""
    arr = np.asarray(images, dtype=np.float64)
    arr = arr.reshape(arr.shape[0], -1)
    side = round(float(np.sqrt(arr.shape[1])))
    if side * side != arr.shape[1]:
        raise AelabError(f"images of {arr.shape[1]} pixels are not square")
    return arr.reshape(-1, side, side)


def image_rows(rows: dict[str, np.ndarray], n_per_row: int = 10,
               title: str = "What the decoder makes of each kind of code") -> Figure:
    """One row of up to n_per_row images per entry of rows (name -> images in [0, 1])."""
    fig = Figure(figsize=(1.1 * n_per_row, 1.3 * len(rows) + 0.4), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(len(rows), n_per_row, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        images = _as_square_images(images)
        for c in range(n_per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < images.shape[0]:
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize="small")
    return fig
