"""Every plot aelab draws. Figures take arrays and return a matplotlib `Figure` (never pyplot);
they compute only what drawing needs, never a metric. `save_figure` writes one PNG atomically.

    grids.py    image grids, reconstructions, interpolation paths
    curves.py   loss per epoch
    latent.py   a latent space beside N(0, I): histograms, per-dim stats, PCA, distances
    save.py     save_figure
"""

from .curves import loss_figure
from .grids import grid_figure, image_grid, interpolation_figure, reconstruction_figure
from .save import save_figure

__all__ = ["grid_figure", "image_grid", "interpolation_figure", "loss_figure", "reconstruction_figure",
           "save_figure"]
