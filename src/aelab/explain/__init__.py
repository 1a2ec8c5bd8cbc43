"""Why N(0, I) noise through a plain autoencoder's decoder gives no digits, measured.

    stats.py     the measures: signs, zeros, dims, correlations, where noise lands
    verdict.py   the words: a verdict and a table, conditional on the numbers
    write.py     explain.md, explain.json and the figures for a run folder
"""

from .stats import latent_stats, noise_vs_real_distances, pca_2d
from .verdict import verdict
from .write import explain_run, write_explain

__all__ = ["explain_run", "latent_stats", "noise_vs_real_distances", "pca_2d", "verdict", "write_explain"]
