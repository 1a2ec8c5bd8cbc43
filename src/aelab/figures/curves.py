"""Training curves from metrics.jsonl records: the loss and every part a model reports.

    fig = loss_figure(metrics)   # one panel for the loss, one per other part (a VAE's recon, kl, ...)
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator

__all__ = ["loss_figure", "curve_parts", "part_label"]

PART_LABELS = {"mse": "MSE per pixel", "recon": "reconstruction error per image",
               "kl": "KL divergence per image (nats)", "penalty": "code penalty",
               "code_l2": "code penalty 0.5 ||z||^2 (unweighted)",
               "code_penalty": "code penalty"}
LABEL_WIDTH = 34  # characters per line of an axis label or title: a panel is about 3 inches tall and wide


def part_label(part: str, parts: Sequence[str]) -> str:
    """What a curve's values are: the loss is named by what it is made of."""
    if part != "loss":
        return PART_LABELS.get(part, part.replace("_", " "))
    if "kl" in parts:
        return "loss: negative ELBO per image (reconstruction + beta KL)"
    if len(parts) == 1:
        return "loss: MSE per pixel"
    return "loss (" + " + ".join(PART_LABELS.get(p, p) for p in parts[1:]) + ")"


def _wrapped(text: str) -> str:
    """A label broken over lines that fit its panel (a VAE's loss label is longer than the axis)."""
    return "\n".join(textwrap.wrap(text, LABEL_WIDTH, break_on_hyphens=False)) or text


def curve_parts(metrics: Sequence[dict]) -> list[str]:
    """"loss", then each part logged for train and validation whose values differ from the loss's
    (the tutorial's mse is its loss, so it gets no second panel)."""
    keys = metrics[0].keys()
    parts = [k[6:] for k in keys if k.startswith("train_") and f"valid_{k[6:]}" in keys]
    same = {p for p in parts if all(m[f"train_{p}"] == m["train_loss"] and m[f"valid_{p}"] == m["valid_loss"]
                                    for m in metrics)}
    return ["loss", *(p for p in parts if p != "loss" and p not in same)]


def loss_figure(metrics: Sequence[dict], title: str = "") -> Figure:
    """Train and validation curves per epoch from metrics.jsonl records, a panel per loss part."""
    epochs = [m["epoch"] for m in metrics]
    parts = curve_parts(metrics)
    fig = Figure(figsize=(6 + 3.2 * (len(parts) - 1), 4))
    for i, part in enumerate(parts):
        ax = fig.add_subplot(1, len(parts), i + 1)
        train = [m[f"train_{part}"] for m in metrics]
        valid = [m[f"valid_{part}"] for m in metrics]
        ax.plot(epochs, train, marker="o", label="train")
        ax.plot(epochs, valid, marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(set(epochs)) == 1:  # one epoch: one tick at it, not a spread of fractions around it
            ax.set_xticks(epochs)
        ax.set_ylabel(_wrapped(part_label(part, parts)))
        if all(v > 0 for v in train + valid):
            ax.set_yscale("log")  # minor ticks labelled too: a decade with only two labels says little
            minor = LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.5))
            ax.yaxis.set_minor_formatter(minor)
        ax.grid(True, alpha=0.3)
        ax.legend()
        if i == 0:
            ax.set_title(_wrapped(title or "loss per epoch"))
        else:
            ax.set_title(_wrapped(part_label(part, parts)))
    fig.tight_layout()
    return fig
