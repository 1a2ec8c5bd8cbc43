"""Saving a figure: the one place a Figure becomes a PNG file."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..files import atomic_write_bytes, figure_png_bytes

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a PNG atomically (`aelab.files`), free the figure, and return the path.

    No "Software" metadata, so the same figure gives the same bytes on every run.
    """
    path = Path(path)
    try:
        atomic_write_bytes(path, figure_png_bytes(fig, dpi))
    finally:
        fig.clear()
    return path
