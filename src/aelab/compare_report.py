"""compare.md: the tables of an `aelab compare` result (compare.json's content), in markdown.

    text = markdown(json.loads(Path("runs/cmp/compare.json").read_text()))

One table per measure, a row per model (PCA first), a column per latent size. In each column
the run with the lowest *validation* MSE is marked (*), since runs are ranked on validation only;
the test numbers are reported beside it, never used to choose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["markdown", "cell"]


def cell(value: float | None, digits: str) -> str:
    return "-" if value is None else format(value, digits)


def _table(result: dict[str, Any], title: str, value: Callable[[dict], float | None], digits: str,
           pca: Callable[[dict], float | None] | None = None, pca_name: str = "PCA",
           mark_best: bool = False) -> list[str]:
    runs = result["runs"]
    sizes = sorted({r["latent_dim"] for r in runs})
    models = list(dict.fromkeys(r["model"] for r in runs))
    by = {(r["model"], r["latent_dim"]): r for r in runs}
    best = {h: min((r for r in runs if r["latent_dim"] == h), key=lambda r: r["valid_mse"])["model"]
            for h in sizes}
    lines = [f"**{title}**", "", "| model | " + " | ".join(f"h={h}" for h in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    if pca is not None:
        rows = {p["latent_dim"]: p for p in result["pca"]}
        lines.append(f"| {pca_name} | " + " | ".join(cell(pca(rows[h]), digits) if h in rows else "-"
                                                      for h in sizes) + " |")
    for m in models:
        cells = []
        for h in sizes:
            r = by.get((m, h))
            text = "-" if r is None else cell(value(r), digits)
            cells.append(text + (" *" if mark_best and r is not None and best[h] == m else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(result: dict[str, Any]) -> str:
    """compare.md's text: test MSE, validation MSE, FID, seconds per epoch and parameters."""
    s = result["settings"]
    splits = s["splits"]
    lines = [
        "# aelab compare", "",
        f"`{result['command']}`", "",
        f"{s['epochs']} epochs per run on {splits['train']['n']} training images of {s['data']['name']} "
        f"({s['data']['source']}); validation: {splits['valid']['from']}; test: the official "
        f"{splits['test']['n']} test images. FID: {s['n_samples']} samples against the test images "
        f"(classifier features), gmm sampler for autoencoders, the prior for VAEs.", "",
    ]
    lines += _table(result, "Test MSE per pixel (outputs clipped to [0, 1]; * = lowest validation MSE "
                    "of the column)", lambda r: r["test_mse"], ".5f", lambda p: p["test_mse"], mark_best=True)
    lines += _table(result, "Validation MSE per pixel (held-out training images: what ranks the runs)",
                    lambda r: r["valid_mse"], ".5f", mark_best=True)
    lines += _table(result, "Sample FID (lower is better)", lambda r: r["fid"], ".1f",
                    lambda p: p["fid_gaussian"], "PCA, Gaussian codes")
    lines += _table(result, "Seconds per epoch (median of the run's epochs)",
                    lambda r: r["seconds_per_epoch"], ".2f")
    lines += _table(result, "Parameters", lambda r: r["params"], ",")
    return "\n".join(lines)
