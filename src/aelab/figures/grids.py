"""Image grids: samples, reconstructions beside their inputs, interpolation paths.

Every function takes arrays and returns a matplotlib `Figure`; callers save it with
`save_figure`. Nothing here computes a metric or touches pyplot's global state.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["image_grid", "grid_figure", "reconstruction_figure", "interpolation_figure"]


def images_per_row(n: int) -> int:
    """A row length that fills every row when one near the square works: 128 -> 16 (8 full rows),
    100 -> 10, 50 -> 10; else the square's ceil(sqrt(n))."""
    side = int(np.ceil(np.sqrt(n)))
    fits = [d for d in range(side, 2 * side + 1) if n % d == 0]
    return fits[0] if fits else max(side, 1)


def image_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images (n, 28, 28) in [0, 1] into one (H, W) array, `nrow` images per row."""
    images = np.asarray(images, dtype=np.float32).reshape(len(images), 28, 28).clip(0, 1)
    n = len(images)
    nrow = nrow or images_per_row(n)
    ncol_rows = int(np.ceil(n / nrow))
    grid = np.ones((ncol_rows * (28 + pad) + pad, nrow * (28 + pad) + pad), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        y, x = pad + r * (28 + pad), pad + c * (28 + pad)
        grid[y:y + 28, x:x + 28] = img
    return grid


def _show(ax, images: np.ndarray, title: str, nrow: int | None = None) -> None:
    ax.imshow(image_grid(images, nrow), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")


def grid_figure(images: np.ndarray, title: str = "", nrow: int | None = None) -> Figure:
    """One grid of images with a title."""
    n = len(images)
    nrow = nrow or images_per_row(n)
    side = max(3.0, 0.5 * nrow)
    fig = Figure(figsize=(side, side * np.ceil(n / nrow) / nrow + 0.4))
    _show(fig.add_subplot(), images, title, nrow)
    fig.tight_layout()
    return fig


def reconstruction_figure(inputs: np.ndarray, outputs: np.ndarray, title: str = "") -> Figure:
    """Inputs (25, 28, 28) as a 5x5 grid beside their reconstructions."""
    fig = Figure(figsize=(8, 4.4))
    _show(fig.add_subplot(1, 2, 1), inputs, "input", 5)
    _show(fig.add_subplot(1, 2, 2), outputs, "reconstruction", 5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def interpolation_figure(rows: np.ndarray, title: str = "") -> Figure:
    """Rows of images (n_pairs, n_steps, 28, 28), each a path between two digits."""
    n_pairs, n_steps = rows.shape[:2]
    fig = Figure(figsize=(0.6 * n_steps + 0.4, 0.6 * n_pairs + 0.6))
    _show(fig.add_subplot(), rows.reshape(-1, 28, 28), title, n_steps)
    fig.tight_layout()
    return fig
