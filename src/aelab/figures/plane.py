"""Two-dimensional codes drawn as they are: the code plane by digit, and the decoded manifold.

    code_scatter(codes, labels)                  # codes (n, 2): no PCA, the axes are z1 and z2
    manifold_figure(images, extent)              # images (k, k, 28, 28) decoded over a k x k grid
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .grids import image_grid

__all__ = ["code_scatter", "manifold_figure"]


def code_scatter(codes: np.ndarray, labels: np.ndarray, title: str = "") -> Figure:
    """Scatter of (n, 2) codes coloured by digit, with the code axes themselves."""
    codes, labels = np.asarray(codes), np.asarray(labels).reshape(-1)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    for i, label in enumerate(np.unique(labels)):
        rows = labels == label
        ax.scatter(codes[rows, 0], codes[rows, 1], s=4, alpha=0.5, color=cmap(i % 10), label=str(label),
                   rasterized=True)
    ax.axhline(0, color="grey", lw=0.6, ls=":")
    ax.axvline(0, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title or "Codes in the plane, by digit")
    ax.legend(title="digit", markerscale=3, fontsize="small", loc="best")
    return fig


def manifold_figure(images: np.ndarray, extent: tuple[float, float, float, float], title: str = "") -> Figure:
    """Images (k, k, 28, 28) decoded at a k x k grid of codes; row 0 at the top is the largest z2.

    `extent` = (z1 min, z1 max, z2 min, z2 max) of the grid, shown on the axes.
    """
    k = images.shape[0]
    tiled = image_grid(images[::-1].reshape(-1, 28, 28), nrow=k, pad=0)
    fig = Figure(figsize=(7, 7), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(tiled, cmap="gray", vmin=0, vmax=1, extent=extent, aspect="auto", interpolation="nearest")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title or f"Decoded codes over the plane ({k} x {k})")
    return fig
