"""The figures of `aelab compare`: test MSE, sample FID and cost against the latent size.

    write_compare_figures(result, "runs/cmp")   # compare-mse.png, compare-fid.png, compare-cost.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .save import save_figure

__all__ = ["mse_figure", "fid_figure", "cost_figure", "write_compare_figures"]


def _series(result: dict[str, Any], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """model -> (latent sizes, values), skipping missing values."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in sorted(result["runs"], key=lambda r: r["latent_dim"]):
        if r.get(key) is not None:
            xs, ys = out.setdefault(r["model"], ([], []))
            xs.append(r["latent_dim"])
            ys.append(r[key])
    return out


def _axes(fig: Figure, n: int = 1):
    axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("latent size h")
        ax.grid(True, alpha=0.3, which="both")
    return axes


def _pca_line(ax, result: dict[str, Any], key: str, label: str) -> None:
    rows = [p for p in sorted(result["pca"], key=lambda p: p["latent_dim"]) if p.get(key) is not None]
    if rows:
        ax.plot([p["latent_dim"] for p in rows], [p[key] for p in rows], color="black", ls="--",
                marker="x", label=label)


def mse_figure(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    (ax,) = _axes(fig)
    _pca_line(ax, result, "test_mse", "PCA")
    for model, (xs, ys) in _series(result, "test_mse").items():
        ax.plot(xs, ys, marker="o", label=model)
    ax.set_yscale("log")
    ax.set_ylabel("test MSE per pixel (log)")
    ax.set_title("Reconstruction of the test split vs code size")
    ax.legend()
    return fig


def fid_figure(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    (ax,) = _axes(fig)
    _pca_line(ax, result, "fid_gaussian", "PCA, Gaussian codes")
    for model, (xs, ys) in _series(result, "fid").items():
        ax.plot(xs, ys, marker="o", label=model + (" (prior)" if model.endswith("-vae") else " (gmm)"))
    ax.set_yscale("log")
    ax.set_ylabel("sample FID (log; classifier features)")
    ax.set_title(f"Samples vs code size (n = {result['settings']['n_samples']})")
    ax.legend()
    return fig


def cost_figure(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    seconds, params = _axes(fig, 2)
    for model, (xs, ys) in _series(result, "seconds_per_epoch").items():
        seconds.plot(xs, ys, marker="o", label=model)
    for model, (xs, ys) in _series(result, "params").items():
        params.plot(xs, ys, marker="o", label=model)
    seconds.set_ylabel("seconds per epoch (median)")
    seconds.set_title("Training time per epoch")
    params.set_yscale("log")
    params.set_ylabel("parameters (log)")
    params.set_title("Model size")
    seconds.legend()
    return fig


def write_compare_figures(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    figures = {"compare-mse.png": mse_figure(result), "compare-cost.png": cost_figure(result)}
    if result["settings"]["n_samples"]:
        figures["compare-fid.png"] = fid_figure(result)
    return [save_figure(fig, out_dir / name) for name, fig in figures.items()]
