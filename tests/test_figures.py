"""Figures say what they show: titles, axis labels, no ragged default grid, no hidden classes."""

from __future__ import annotations

import numpy as np

from aelab.figures import grid_figure, image_grid
from aelab.figures import latent as lf


def test_the_default_128_sample_grid_has_no_ragged_row():
    grid = image_grid(np.zeros((128, 28, 28)))
    assert grid.shape == (8 * 30 + 2, 16 * 30 + 2)  # 16 per row, 8 full rows
    assert grid_figure(np.zeros((100, 28, 28)), "x").axes[0].get_title() == "x"


def test_dim_stats_mentions_dead_dims_only_when_there_are_some():
    stds = np.linspace(0.2, 2, 16)
    label = lf.dim_stats(np.zeros(16), stds).axes[0].get_xlabel()
    assert "dead" not in label
    stds[:3] = 0
    assert "3 dead dims at the right" in lf.dim_stats(np.zeros(16), stds).axes[0].get_xlabel()


def test_pca_scatter_has_one_legend_entry_per_digit_and_mixed_drawing_order(mnist):
    labels = mnist.train_labels[:500].numpy()
    fig = lf.pca_scatter(np.random.default_rng(0).standard_normal((500, 2)), labels, np.array([0.2, 0.1]))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(d) for d in range(10)]
    assert "PC1 (20% of variance)" == ax.get_xlabel()
    colours = ax.collections[0].get_facecolors()
    assert len(colours) == 500 and len({tuple(c) for c in colours[:50]}) > 3  # not one class first


def test_decoded_rows_have_a_title():
    fig = lf.image_rows({"noise": np.zeros((10, 784)), "real": np.ones((10, 784))})
    assert fig.get_suptitle() == "What the decoder makes of each kind of code"


def test_loss_figure_names_its_loss_and_ticks_whole_epochs():
    from aelab.figures import loss_figure

    records = [{"epoch": e, "train_loss": 0.1 / e, "valid_loss": 0.09 / e, "train_mse": 0.1 / e,
                "valid_mse": 0.09 / e} for e in range(1, 8)]
    ax = loss_figure(records).axes[0]
    assert ax.get_ylabel() == "loss: MSE per pixel"
    ax.figure.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    vae = [{**r, "train_kl": 5.0, "valid_kl": 5.1, "train_recon": 100.0, "valid_recon": 101.0}
           for r in records]
    axes = loss_figure(vae).axes
    assert axes[0].get_ylabel().startswith("loss: negative ELBO") and len(axes) >= 3
