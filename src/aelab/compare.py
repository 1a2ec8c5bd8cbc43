"""`aelab compare`: model families x latent sizes, beside PCA; one table, figures, resumable.

    aelab compare --models dense,dense-linear,conv,conv-vae --latent-dims 2,8,32 --epochs 20 --out runs/cmp

Every (model, latent size) trains into OUT/<model>-<latent>/ as an ordinary run folder, with the
`compare` preset (one recipe for all; see `aelab.presets`) and the dense families' hidden widths
fixed at 512, 256 (width_dim 128), so only the code and the family change. A finished run is
reused, an interrupted one resumed; a folder holding other settings is an error. Each run is then
scored once (OUT/<model>-<latent>/compare-scores.json, redone only when its weights change):
reconstruction of the official test split (outputs clipped to [0, 1]: MSE, PSNR, SSIM) and the
classifier FID of `n_samples` samples against the test images, from the `gmm` sampler for an
autoencoder (fitted on the run's training split only) and from the prior for a VAE. PCA is fitted
on the same training split at each size. Runs are ranked on the validation split (held out from
the training images), never on the test split; every number says its split.
Writes OUT/compare.json, OUT/compare.md and OUT/compare-{mse,fid,cost}.png.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .checks import MAX_SAMPLES
from .config import Config
from .data import ImageData, load_dataset
from .data.images import to_float_images
from .engine import Interrupted
from .errors import AelabError, RunError
from .files import atomic_write_text, writable_dir, write_json
from .models import KINDS, MODELS, parameter_count
from .presets import resolve_config
from .records import check_final
from .rundir import RunDir
from .splits import Split
from .training import FINAL, train

__all__ = ["Entry", "grid_from_text", "entry_config", "compare", "WIDE_FAMILIES"]

WIDE_FAMILIES = ("dense", "dense-linear")  # hidden widths 4w, 2w with w fixed at 128 (512, 256)
SCORES = "compare-scores.json"


@dataclass(frozen=True)
class Entry:
    """One cell of the grid: a registered architecture, trained as `kind`, at one code size."""

    architecture: str
    kind: str
    latent_dim: int

    @property
    def model(self) -> str:
        return self.architecture + ("-vae" if self.kind == "vae" else "")

    @property
    def name(self) -> str:
        return f"{self.model}-{self.latent_dim}"


def _model_name(text: str) -> tuple[str, str]:
    if text in MODELS:
        return text, "ae"
    if text.endswith("-vae") and text[:-4] in MODELS:
        return text[:-4], "vae"
    raise AelabError(f"unknown model {text!r}; choose from {', '.join(MODELS.names())}, each also as "
                     f"<name>-vae")


def grid_from_text(models: str, latent_dims: str) -> list[Entry]:
    """'dense,conv-vae' and '2,16' -> the 4 entries, models outermost, in the order given."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    try:
        sizes = [int(s) for s in latent_dims.split(",") if s.strip()]
    except ValueError:
        raise AelabError(f"--latent-dims {latent_dims!r} must be comma-separated whole numbers") from None
    if not names or not sizes:
        raise AelabError("compare needs at least one model and one latent size")
    if any(s < 1 for s in sizes):
        raise AelabError(f"--latent-dims {latent_dims!r}: every size must be at least 1")
    entries = [Entry(*_model_name(m), h) for m in names for h in sizes]
    if len(set(entries)) < len(entries):
        raise AelabError("compare: a model or latent size is named twice")
    return entries


def entry_config(entry: Entry, epochs: int, data_dir: str | None = None, dataset: str = "mnist",
                 seed: int = 0) -> Config:
    """The run's config: the compare preset with this entry's model, kind and code size."""
    KINDS.get(entry.kind)
    return resolve_config("compare", {
        "architecture": entry.architecture, "kind": entry.kind, "latent_dim": entry.latent_dim,
        "width_dim": 128 if entry.architecture in WIDE_FAMILIES else None, "epochs": epochs,
        "seed": seed, "dataset": dataset, "data_dir": data_dir})


# --- one run: train or reuse, then score --------------------------------------------------------

def _comparable(d: dict) -> dict:
    """A config dict without what may differ between two tries of the same run."""
    d = json.loads(json.dumps(d))
    d["data"].pop("data_dir", None)
    d["train"].pop("checkpoint_minutes", None)
    d["train"].pop("threads_chosen", None)  # what --threads auto measured on this machine, this time
    d["train"].pop("matmul_chosen", None)
    return d


def _state(path: Path, cfg: Config) -> str:
    """'new', 'finished', 'resume' or 'restart' for the run folder at path; raises on other settings."""
    run_dir = RunDir(path)
    if not run_dir.config.is_file():
        return "restart" if path.is_dir() and any(path.iterdir()) else "new"
    saved, _ = run_dir.read_config()
    want, have = _comparable(cfg.to_dict()), _comparable(saved.to_dict())
    if want != have:
        diff = [f"{s}.{k}" for s in want if isinstance(want[s], dict)
                for k in want[s] if want[s][k] != have.get(s, {}).get(k)] or ["preset"]
        raise AelabError(f"{path} holds a run with other settings ({', '.join(diff[:3])}); remove it or "
                         f"choose another --out")
    if run_dir.model.is_file() and (path / FINAL).is_file():
        return "finished"
    return "resume" if run_dir.checkpoint.is_file() else "restart"


def _score(run_path: Path, entry: Entry, data: ImageData, split: Split, n_samples: int, seed: int,
           classifier, components: int | None) -> dict[str, Any]:
    """Test reconstruction and sample FID of one finished run (cached beside its weights)."""
    from .metrics import frechet_distance, reconstruction_metrics
    from .run import load_run
    from .samplers import create_sampler
    from .samplers.fitting import sample_codes, sampler_defaults

    run_dir = RunDir(run_path)
    run = load_run(run_path)  # its weights read and checked (a regular file inside, bounded, finite)
    sampler = "prior" if entry.kind == "vae" else "gmm"
    kwargs = {"n_components": components} if components and sampler == "gmm" else {}
    key = {"weights_digest": run.weights_digest, "n_samples": n_samples, "seed": seed, "sampler": sampler,
           # the settings fitted_sampler will use: a new default scores again
           "sampler_config": create_sampler(sampler, **{**sampler_defaults(entry.kind, sampler), **kwargs})
           .get_config()}
    cached = run_path / SCORES
    if cached.is_file():
        try:  # a cache: anything unreadable or stale is scored again
            saved = run_dir.read_json(cached)
            if isinstance(saved, dict) and saved.get("key") == key and isinstance(saved.get("scores"), dict):
                return saved["scores"]
        except RunError:
            pass
    final = check_final(run_dir.read_json(run_path / FINAL), str(run_path / FINAL))
    test = to_float_images(data.test_images).reshape(-1, 28, 28)
    recon = reconstruction_metrics(test, run.reconstruct(data.test_images))
    scores: dict[str, Any] = {
        "params": parameter_count(run.model), "seconds_per_epoch": final["seconds_per_epoch_median"],
        "epochs": final["epoch"], "valid_mse": final["valid"]["mse"], "valid_loss": final["valid"]["loss"],
        "test_mse": recon["mse"], "test_psnr": recon["psnr"], "test_ssim": recon["ssim"],
        "test_mse_unclipped": final["test"]["mse"], "sampler": sampler, "fid": None,
    }
    if n_samples:
        # the sampler sees the training split only, as the model did
        fit_data = dataclasses.replace(data, train_images=split.train_images, train_labels=split.train_labels)
        images = run.decode(sample_codes(run, sampler, n_samples, seed, data=fit_data, **kwargs))
        scores["fid"] = frechet_distance(test, images, classifier)
    write_json(cached, {"key": key, "scores": scores})
    return scores


def _pca(split: Split, data: ImageData, sizes: list[int], n_samples: int, seed: int,
         classifier) -> list[dict]:
    from .metrics import frechet_distance, pca_baseline

    test = to_float_images(data.test_images).reshape(-1, 28, 28)
    rows = []
    for h in sizes:
        pca = pca_baseline(split.train_images, data.test_images, h, seed)
        fid = frechet_distance(test, pca["sample"](n_samples, seed), classifier) if n_samples else None
        rows.append({"latent_dim": h, "test_mse": pca["metrics"]["mse"], "test_psnr": pca["metrics"]["psnr"],
                     "test_ssim": pca["metrics"]["ssim"], "fid_gaussian": fid})
    return rows


# --- the whole grid ---------------------------------------------------------------------------

def compare(grid: list[Entry], out: str | Path, epochs: int = 20, data_dir: str | None = None,
            dataset: str = "mnist", n_samples: int = 2000, seed: int = 0, progress: bool = True,
            data: ImageData | None = None, command: str | None = None,
            components: int | None = None) -> dict[str, Any]:
    """Train (or reuse) and score every entry of `grid` under `out`; write the tables and figures.

    `components`: the gmm sampler's mixture size (default: the sampler's own). Returns
    compare.json's content plus "markdown" (compare.md's text).
    """
    from .classifier import load_or_train_classifier
    from .compare_report import markdown
    from .figures.compare import write_compare_figures

    out = Path(out)
    writable_dir(out)
    if n_samples < 0 or n_samples == 1 or n_samples > MAX_SAMPLES:
        raise AelabError(f"--n {n_samples} must be 0 (no FID) or from 2 to {MAX_SAMPLES:,}")
    configs = {e: entry_config(e, epochs, data_dir, dataset, seed) for e in grid}
    states = {e: _state(out / e.name, configs[e]) for e in grid}  # every folder checked before any work
    data = data or load_dataset(dataset, data_dir, log=lambda line: print(line, file=sys.stderr),
                                progress=progress)
    split = Split.of(data, configs[grid[0]].train.valid_fraction)
    classifier = load_or_train_classifier(data)[0] if n_samples else None

    credit = {e: epochs if states[e] == "finished" else 0 for e in grid}  # epochs done, per run
    bar = tqdm(total=len(grid) * epochs, initial=sum(credit.values()), unit="epoch", desc="compare",
               disable=not progress, dynamic_ncols=True)
    rows = []
    try:
        for e in grid:
            bar.set_postfix_str(e.name)
            if states[e] != "finished":  # look again: another compare on this --out may have run it
                states[e] = _state(out / e.name, configs[e])
            if states[e] != "finished":
                def advance(record: dict, e: Entry = e) -> None:
                    credit[e] = record["epoch"]
                    bar.update(sum(credit.values()) - bar.n)

                train(configs[e], out / e.name, resume=states[e] == "resume", force=states[e] == "restart",
                      quiet=True, data=data, on_epoch=advance,
                      log=lambda line: bar.write(line, file=sys.stderr) if "warning" in line else None)
                credit[e] = epochs
                bar.update(sum(credit.values()) - bar.n)
            bar.set_postfix_str(f"{e.name}: scoring")
            rows.append({"name": e.name, "model": e.model, "architecture": e.architecture, "kind": e.kind,
                         "latent_dim": e.latent_dim,
                         **_score(out / e.name, e, data, split, n_samples, seed, classifier, components)})
    except Interrupted as err:
        raise Interrupted(f"{err} in {out}; run the same aelab compare command to continue") from None
    finally:
        bar.close()
    sizes = sorted({e.latent_dim for e in grid})
    result = {
        "command": command or "aelab compare " + " ".join(sys.argv[2:]),
        "settings": {"epochs": epochs, "n_samples": n_samples, "seed": seed, "preset": "compare",
                     "gmm_components": components or "default",
                     "config": _comparable(configs[grid[0]].to_dict())["train"],
                     "data": data.info(), "splits": split.info(),
                     "ranked_on": "valid", "reconstruction_on": "test", "fid_reference": "test"},
        "runs": rows,
        "pca": _pca(split, data, sizes, n_samples, seed, classifier),
    }
    write_json(out / "compare.json", result)
    text = markdown(result)
    atomic_write_text(out / "compare.md", text)
    write_compare_figures(result, out)
    return {**result, "markdown": text}
