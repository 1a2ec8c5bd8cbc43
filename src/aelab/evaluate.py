"""`aelab evaluate`: reconstruction and sample metrics of a run, beside its PCA baseline and ceilings.

    aelab evaluate runs/seed     # evaluation.json + a printed table

Every number is computed here from the run's weights and its dataset; nothing is copied in.
Sample quality is scored with a small CNN digit classifier trained on the same dataset's
training split (see `aelab.metrics`): a Frechet distance on its features ("FID" below, not
Inception's), improved precision and recall on the same features (fidelity and coverage apart,
`aelab.scoring`), the share of samples it labels with confidence > 0.9, the classes present,
and each sample's distance to its nearest training image (a memorisation check, read against the
"decoded validation codes" row: what the decoder makes of images it never trained on).

The training images are encoded once and the codes reused by every row and every sampler fit;
each row prints what it is doing and its results on stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from .classifier import load_or_train_classifier
from .data.images import to_float_images
from .figures import grid_figure, interpolation_figure, save_figure
from .files import writable_dir, write_json
from .metrics import pca_baseline, reconstruction_metrics
from .run import Run, load_run
from .samplers.fitting import applicable_samplers, models_preactivation, run_data, sample_codes
from .scoring import SampleScorer

__all__ = ["evaluate_run", "interpolate", "format_table"]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def interpolate(run: Run, a: torch.Tensor, b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Images (n_pairs, steps, 28, 28) decoded along straight lines between the codes of a and b."""
    za, zb = run.encode(a), run.encode(b)                      # (n_pairs, latent_dim) each
    t = torch.linspace(0, 1, steps).reshape(1, steps, 1)
    path = za[:, None] * (1 - t) + zb[:, None] * t             # (n_pairs, steps, latent_dim)
    return run.decode(path.reshape(-1, run.latent_dim)).reshape(len(a), steps, 28, 28)


def _score(scorer: SampleScorer, images: torch.Tensor, started: float) -> dict:
    row = scorer.score(images)
    row.pop("class_histogram")
    row["n"] = len(images)
    _log(f"        FID {row['fid']:7.2f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
         f"confident {row['confident_share']:.3f}  classes {row['classes_present']:2d}  "
         f"NN distance {row['nn_train_distance_median']:.2f}  ({time.perf_counter() - started:.0f} s)")
    return row


def evaluate_run(run_dir: str | Path, n: int = 5000, samplers: list[str] | None = None, seed: int = 0,
                 device: str = "cpu", components: int | None = None) -> dict[str, Any]:
    """Reconstruction and sample metrics for a run, its PCA baseline and its ceilings.

    Writes `RUN_DIR/evaluation.json`, sample grids `RUN_DIR/evaluation/<sampler>.png` and
    `RUN_DIR/evaluation/interpolation.png` (its own folder: `aelab sample`'s images in
    `RUN_DIR/samples/` and anything a user put there stay untouched); returns the same dict as
    the JSON. `components` sets the gmm sampler's mixture size (default: the sampler's own).
    """
    run = load_run(run_dir, device=device)
    writable_dir(run.path / "evaluation")  # refuse a symlinked or broken folder before the work
    data = run_data(run)
    classifier, accuracy = load_or_train_classifier(data)
    _log(f"aelab: digit classifier test accuracy {accuracy:.4f}")
    train_u8, valid_u8 = data.train_images, data.test_images
    valid = to_float_images(valid_u8).reshape(-1, 28, 28)
    n = min(n, len(train_u8))

    recon = run.reconstruct(valid_u8)
    pca = pca_baseline(train_u8, valid_u8, run.latent_dim, seed)
    result: dict[str, Any] = {
        "run": str(run.path), "dataset": run.data_info.get("name"), "source": run.data_info.get("source"),
        "n_samples": n, "seed": seed, "classifier_test_accuracy": accuracy,
        "reconstruction": {"model": reconstruction_metrics(valid, recon),
                           f"pca-{run.latent_dim}": pca["metrics"]},
        "samples": {},
    }
    names = samplers or applicable_samplers(run)
    titles = (["real training images", "decoded training codes", "decoded validation codes"]
              + [f"sampler {name}" for name in names] + [f"pca-{run.latent_dim} gaussian"])
    _log(f"aelab: scoring {len(titles)} rows of {n} images each against the {len(valid)} validation "
         f"images")
    scorer = SampleScorer(classifier, valid, train_u8)
    pre = models_preactivation(run)
    codes = run.encode(train_u8, preactivation=pre)  # (n_train, latent_dim), once for every row
    pick = torch.randperm(len(train_u8), generator=torch.Generator().manual_seed(seed))[:n]
    # How far an image the decoder did not train on lands from its nearest training image: the
    # yardstick for the samplers' NN distances (its FID is flattered: the reference set holds
    # these very images' originals)
    held_out = torch.randperm(len(valid_u8), generator=torch.Generator().manual_seed(seed + 1))[:n]
    rows = result["samples"]
    for i, title in enumerate(titles, 1):
        started = time.perf_counter()
        _log(f"aelab: [{i}/{len(titles)}] {title}")
        if title == "real training images":
            images = to_float_images(train_u8[pick]).reshape(-1, 28, 28)
        elif title == "decoded training codes":
            images = run.decode(codes[pick].relu() if pre else codes[pick])
        elif title == "decoded validation codes":
            images = run.reconstruct(valid_u8[held_out])
        elif title.startswith("sampler "):
            name = title.removeprefix("sampler ")
            kwargs = {"n_components": components} if name == "gmm" and components else {}
            images = run.decode(sample_codes(run, name, n, seed, data=data, codes=codes.numpy(), **kwargs))
            save_figure(grid_figure(images[:100].numpy(), f"{name} sampler", 10),
                        run.path / "evaluation" / f"{name}.png")
        else:
            images = pca["sample"](n, seed)
        rows[title] = _score(scorer, images, started)

    pairs = interpolate(run, valid_u8[0:8:2], valid_u8[1:9:2])
    save_figure(interpolation_figure(pairs.numpy(), "straight lines in code space between validation digits"),
                run.path / "evaluation" / "interpolation.png")
    if run.latent_dim == 2:  # the codes themselves and the decoded plane: figures/codes_2d.png, manifold.png
        from .plane import write_plane_figures

        write_plane_figures(run, valid_u8, data.test_labels, run.path / "figures", "test images")
    write_json(run.path / "evaluation.json", result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The evaluation as two markdown tables: reconstruction, then samples."""
    lines = ["| reconstruction (validation) | MSE | PSNR (dB) | SSIM |", "|---|---:|---:|---:|"]
    for name, m in result["reconstruction"].items():
        lines.append(f"| {name} | {m['mse']:.5f} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    lines += ["", f"| images (n={result['n_samples']}) | FID (classifier features) | precision | recall "
              "| confident > 0.9 | classes | NN distance to train (median) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in result["samples"].items():
        pr = (f"{r['precision']:.3f} | {r['recall']:.3f}" if "precision" in r else "- | -")  # older files
        lines.append(f"| {name} | {r['fid']:.2f} | {pr} | {r['confident_share']:.3f} "
                     f"| {r['classes_present']} | {r['nn_train_distance_median']:.2f} |")
    lines.append(f"\nclassifier test accuracy {result['classifier_test_accuracy']:.4f}; FID against the "
                 f"validation images; dataset {result['dataset']} ({result['source']})")
    if "decoded validation codes" in result["samples"]:
        lines.append("decoded validation codes: their FID is flattered (the reference set holds their "
                     "originals); their NN distance is the yardstick for the samplers'")
    return "\n".join(lines)
