"""Training curves from metrics.jsonl records."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

__all__ = ["loss_figure"]


def loss_figure(metrics: Sequence[dict], title: str = "") -> Figure:
    """Train and validation loss per epoch from metrics.jsonl records."""
    epochs = [m["epoch"] for m in metrics]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(epochs, [m["train_loss"] for m in metrics], marker="o", label="train")
    ax.plot(epochs, [m["valid_loss"] for m in metrics], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(m["valid_loss"] > 0 for m in metrics) and all(m["train_loss"] > 0 for m in metrics):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "loss per epoch")
    fig.tight_layout()
    return fig
