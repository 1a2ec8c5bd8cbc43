"""The report page: a summary and a table of contents first, then each part of the run.

Order: summary (what was trained, parameters, data, time, final losses, the best sampler
against its ceiling), losses per epoch, reconstructions (first and last epoch, the others
folded), samples in teaching order, the evaluation tables, the explain page, the config, a
glossary. Every part appears only where the run folder has it.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from ..files import check_inside
from ..records import check_evaluation, check_final, is_number
from ..rundir import RunDir
from .html import CSP, CSS, format_number, image, markdown, present, table
from .names import COLUMN_NAMES, GLOSSARY, column_name, sampler_rank

__all__ = ["build_report"]

MAX_IMAGES = 400  # images from one folder: more would make a page nobody reads
METRIC_COLUMNS = ("epoch", "train_loss", "valid_loss", "valid_mse", "seconds")
SAMPLE_COLUMNS = ("fid", "precision", "recall", "confident_share", "classes_present",
                  "nn_train_distance_median")


def _pngs(run: RunDir, folder: Path, pattern: str = "*.png") -> list[Path]:
    """PNG files of a run's subfolder, sorted; the folder itself must not be a symlink."""
    if not present(folder):
        return []
    check_inside(folder, run.path)
    return sorted(folder.glob(pattern))[:MAX_IMAGES]


def _parameters(cfg) -> int | None:
    from ..models import create_model, parameter_count

    try:
        return parameter_count(create_model(cfg.model))
    except Exception:  # noqa: BLE001 - a count is a nicety; the config was validated already
        return None


def _model_line(cfg) -> str:
    m = cfg.model
    kind = "variational autoencoder" if m.kind == "vae" else "autoencoder"
    n = _parameters(cfg)
    params = f", {n:,} parameters" if n else ""
    return f"{m.architecture} {kind}, {m.latent_dim}-d code{params} (preset {cfg.preset})"


def _best_sampler(evaluation: dict | None) -> str:
    if not evaluation:
        return "not evaluated yet: aelab evaluate RUN_DIR"
    rows = evaluation.get("samples", {})
    samplers = {k: r for k, r in rows.items() if k.startswith("sampler ") and is_number(r.get("fid"))}
    ceiling = rows.get("decoded training codes", {}).get("fid")
    if not samplers:
        return "no sampler scored"
    name, row = min(samplers.items(), key=lambda kv: kv[1]["fid"])
    against = f" against {format_number(ceiling)} for decoded training codes (the ceiling)" \
        if is_number(ceiling) else ""
    return f"{name.removeprefix('sampler ')}: FID {format_number(row['fid'])}{against}"


def _test_line(final: dict | None) -> str:
    """The test split's reconstruction MSE as `aelab.load_run(RUN).reconstruct` gives it."""
    mse = (final or {}).get("reconstruction", {}).get("test_mse")
    if not is_number(mse):
        return ("not scored yet: training has not finished (continue it with aelab train --resume)"
                if final is None else "not recorded (a run from an older aelab)")
    return (f"reconstruction MSE {format_number(mse)} on the official test split (outputs clipped to "
            f"[0, 1], as aelab.load_run reconstructs)")


def _summary(cfg, data: dict, metrics: list[dict], evaluation: dict | None, final: dict | None) -> str:
    last = metrics[-1] if metrics else {}
    seconds = sum(r.get("seconds") or 0 for r in metrics)
    split = "official test split" if getattr(cfg.train, "valid_fraction", 0) in (0, None) \
        else "held-out training images"
    losses = ", ".join(f"{column_name(k)} {format_number(last[k])}" for k in ("train_mse", "valid_mse")
                       if is_number(last.get(k)))
    rows = [
        ("trained", _model_line(cfg)),
        ("data", f"{data.get('name', cfg.data.dataset)} ({data.get('source', 'unknown source')}): "
                 f"{format_number(data.get('n_train'))} training, {format_number(data.get('n_test'))} "
                 f"test images"),
        ("training", f"{len(metrics)} of {cfg.train.epochs} epochs in {format_number(round(seconds, 1))} "
                     f"s; Adam lr {format_number(cfg.train.lr)}, batch {cfg.train.batch_size}, "
                     f"seed {cfg.train.seed}"),
        ("final losses", (losses + f" (validation on the {split})") if losses else "no finished epoch yet"),
        ("test", _test_line(final)),
        ("best sampler", _best_sampler(evaluation)),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary" id="summary">{body}</table>'


def _metrics_table(metrics: list[dict]) -> str:
    rows = [[r.get(c) for c in METRIC_COLUMNS] for r in metrics]
    return table([column_name(c) for c in METRIC_COLUMNS], rows, "metrics",
                 [COLUMN_NAMES[c][1] for c in METRIC_COLUMNS])


def _evaluation_tables(evaluation: dict) -> str:
    parts = []
    recon = evaluation.get("reconstruction", {})
    if recon:
        parts.append("<h3>Reconstruction of the validation images</h3>")
        cols = ("mse", "psnr", "ssim")
        parts.append(table(["", *map(column_name, cols)], [[name, *(row.get(c) for c in cols)]
                                                           for name, row in recon.items()],
                           "evaluation", ["", *(COLUMN_NAMES[c][1] for c in cols)]))
    samples = evaluation.get("samples", {})
    if samples:
        cols = [c for c in SAMPLE_COLUMNS if any(c in row for row in samples.values())]

        def rank(name: str) -> tuple[int, tuple[int, str]]:
            if name.startswith("sampler "):
                return 1, sampler_rank(name.removeprefix("sampler "))
            return (0 if name in ("real training images", "decoded training codes",
                                  "decoded validation codes") else 2), (0, name)

        n = evaluation.get("n_samples")
        parts.append(f"<h3>Samples{f' ({format_number(n)} images per row)' if is_number(n) else ''}</h3>")
        rows = [[name, *(samples[name].get(c) for c in cols)] for name in sorted(samples, key=rank)]
        parts.append(table(["", *map(column_name, cols)], rows, "evaluation",
                           ["", *(COLUMN_NAMES[c][1] for c in cols)]))
    accuracy = evaluation.get("classifier_test_accuracy")
    if is_number(accuracy):
        parts.append(f'<p class="muted">digit classifier test accuracy {format_number(accuracy)}; '
                     f"dataset {escape(str(evaluation.get('dataset')))}</p>")
    return "\n".join(parts)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    """{"a": {"b": 1}} -> [["a.b", 1]]; lists stay whole."""
    rows: list[list[Any]] = []
    for key, value in d.items():
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append([f"{prefix}{key}", value])
    return rows


def build_report(run_dir: str | Path, skipped: list[str] | None = None) -> str:
    """The HTML page for a run folder; raises `RunError` when it is not one.

    An image aelab refuses to read (a symlink, not a PNG, too large) raises too, unless `skipped`
    is a list: then the page notes it and the reason is appended there.
    """
    run = RunDir(run_dir)
    cfg, data = run.read_config()
    saved = run.read_saved_config()
    metrics = run.read_metrics()
    evaluation_path = run.path / "evaluation.json"
    evaluation = (check_evaluation(run.read_json(evaluation_path), str(evaluation_path))
                  if present(evaluation_path) else None)
    final_path = run.path / "final.json"  # written when training ends; the test split's scores
    final = check_final(run.read_json(final_path), str(final_path)) if present(final_path) else None

    def embed(path: Path, caption: str) -> str:
        return image(run, path, caption, skipped)

    sections: list[tuple[str, str, str]] = []  # (id, title, html)
    losses = [_metrics_table(metrics)] if metrics else ['<p class="muted">no finished epoch yet</p>']
    if present(run.figures / "loss.png"):
        losses.insert(0, embed(run.figures / "loss.png", "loss per epoch"))
    sections.append(("losses", "Loss per epoch", "\n".join(losses)))
    sections.append(("reconstructions", "Reconstructions", _reconstructions(run, embed)))
    samples = sorted(_pngs(run, run.path / "samples"), key=lambda p: sampler_rank(p.stem))
    if samples:
        sections.append(("samples", "Samples, the tutorial's noise first",
                         "\n".join(embed(p, f"sampler {p.stem}") for p in samples)))
    scored = sorted(_pngs(run, run.path / "evaluation"), key=lambda p: sampler_rank(p.stem))
    if scored:
        sections.append(("evaluation-images", "Samples scored by aelab evaluate, and interpolations",
                         "\n".join(embed(p, p.stem if p.stem == "interpolation" else f"sampler {p.stem}")
                                   for p in scored)))
    if evaluation:
        sections.append(("evaluation", "Evaluation", _evaluation_tables(evaluation)))
    known = {"loss.png", "result_input.png", "result_output.png"}
    others = [p for p in _pngs(run, run.figures) if p.name not in known and not p.name.startswith("epoch_")]
    if others:
        sections.append(("figures", "Other figures", "\n".join(embed(p, p.stem.replace("_", " "))
                                                               for p in others)))
    explain = run.path / "explain" / "explain.md"
    if present(explain):
        sections.append(("explain", "Why noise gives no digits (aelab explain)",
                         markdown(embed, run.read_text(explain), explain.parent)))
    sections.append(("config", "Config", table(["key", "value"], _flatten(saved), "config")))
    glossary = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in GLOSSARY.items())
    sections.append(("glossary", "Glossary", f'<dl class="glossary">{glossary}</dl>'))

    title = f"aelab run {run.path.resolve().name}"
    toc = "".join(f'<li><a href="#{sid}">{escape(name)}</a></li>' for sid, name, _ in sections)
    out = [f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{escape(title)}</h1>",
           f'<div class="top">{_summary(cfg, data, metrics, evaluation, final)}'
           f'<nav class="toc" id="toc"><strong>Contents</strong><ol>{toc}</ol></nav></div>']
    out += [f'<h2 id="{sid}">{escape(name)}</h2>\n{body}' for sid, name, body in sections]
    out.append(f'<p class="muted">folder {escape(str(run.path))}</p></body></html>\n')
    return "\n".join(out)


def _reconstructions(run: RunDir, embed: Callable[[Path, str], str]) -> str:
    """The final input/output grids, the first and last epoch, the other epochs folded."""
    parts = [embed(run.figures / name, caption) for name, caption in
             (("result_input.png", "validation input"), ("result_output.png", "final reconstruction"))
             if present(run.figures / name)]
    epochs = _pngs(run, run.figures, "epoch_[0-9][0-9][0-9].png")
    shown = epochs[:1] + epochs[-1:] if len(epochs) > 1 else epochs
    parts += [embed(p, f"epoch {int(p.stem.split('_')[1])}") for p in shown]
    middle = epochs[1:-1]
    if middle:
        parts.append(f"<details><summary>the other {len(middle)} epochs</summary>"
                     + "".join(embed(p, f"epoch {int(p.stem.split('_')[1])}") for p in middle) + "</details>")
    return "\n".join(parts) or '<p class="muted">no reconstruction figures yet</p>'
