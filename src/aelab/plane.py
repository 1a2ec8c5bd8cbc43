"""A run with a 2-d code, seen directly: its codes by digit and its decoder over the code plane.

    paths = write_plane_figures(run, images, labels, "runs/h2/figures")   # codes_2d.png, manifold.png

The grid spans the 1st to 99th percentile of the given codes on each axis (a VAE's codes are its
posterior means), so it covers where the data lies, empty regions between the digits included.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from .figures import save_figure
from .figures.plane import code_scatter, manifold_figure
from .models import model_warning

__all__ = ["plane_grid", "write_plane_figures", "GRID"]

GRID = 20  # decoded images per side of the manifold


def plane_grid(codes: np.ndarray, k: int = GRID) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """(k * k, 2) codes on a regular grid over the codes' 1st-99th percentiles, row-major from the
    lowest z2; and the grid's extent (z1 min, z1 max, z2 min, z2 max)."""
    lo, hi = np.percentile(codes, [1, 99], axis=0)
    hi = np.where(hi > lo, hi, lo + 1e-3)  # a constant axis still gets a (tiny) span
    z1, z2 = np.linspace(lo[0], hi[0], k), np.linspace(lo[1], hi[1], k)
    grid = np.stack(np.meshgrid(z1, z2), axis=-1).reshape(-1, 2)  # (k * k, 2), z1 fastest
    return grid.astype(np.float32), (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))


def write_plane_figures(run, images: torch.Tensor, labels: torch.Tensor, out_dir: str | Path,
                        what: str = "images") -> list[Path]:
    """Encode `images`, draw their codes by digit and the decoded grid; return the two PNG paths."""
    if (warning := model_warning(run.config.model)):
        print(f"aelab: warning: {warning}", file=sys.stderr)
    codes = run.encode(images).numpy()  # (n, 2)
    grid, extent = plane_grid(codes)
    decoded = run.decode(grid).numpy().reshape(GRID, GRID, 28, 28)
    out_dir = Path(out_dir)
    return [save_figure(code_scatter(codes, labels.numpy(), f"Codes of {len(codes):,} {what}, by digit"),
                        out_dir / "codes_2d.png"),
            save_figure(manifold_figure(decoded, extent), out_dir / "manifold.png")]
