"""report.html: one self-contained page about a run folder.

    aelab report runs/seed        # -> runs/seed/report.html (`aelab train` writes it at the end)

The page shows the config, the losses per epoch (table from metrics.jsonl and the loss curve),
the reconstruction grid of every epoch, the samples per sampler, the `aelab evaluate` tables and
the `aelab explain` figures, each where the run folder has them. Images are embedded as base64
data URIs and a Content-Security-Policy forbids any other source, so the file can be mailed or
archived alone and opening it makes no network request.
"""

from __future__ import annotations

import base64
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from .errors import RunError
from .files import atomic_write_bytes, check_inside
from .records import check_evaluation
from .rundir import RunDir

MAX_IMAGES = 400  # images from one folder: more would make a page nobody reads

__all__ = ["write_report", "build_report", "format_number"]

METRIC_COLUMNS = ("epoch", "train_loss", "valid_loss", "valid_mse", "seconds")

_CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.4em;vertical-align:top}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}.muted{color:#777}"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def format_number(value: Any) -> str:
    """How the page prints a value: floats with 6 significant digits, the rest as text."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num" data-value="{value!r}">{escape(format_number(value))}</td>'
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return f"<td>{escape(format_number(value))}</td>"


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _image(run: RunDir, path: Path, caption: str, skipped: list[str] | None = None) -> str:
    """A PNG of the run folder embedded as data; a refused file raises, or with `skipped` is noted."""
    try:
        data = base64.b64encode(run.read_png(path)).decode("ascii")
    except RunError as e:
        if skipped is None:
            raise
        skipped.append(str(e))
        return f'<p class="muted">skipped: {escape(str(e))}</p>'

    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    """{"a": {"b": 1}} -> [["a.b", 1]]; lists stay whole."""
    rows: list[list[Any]] = []
    for key, value in d.items():
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append([f"{prefix}{key}", value])
    return rows


def _json_tables(d: dict[str, Any]) -> str:
    """Any JSON object as tables: scalars as one key/value table, each dict of dicts as a matrix."""
    scalars = [[k, v] for k, v in d.items() if not isinstance(v, dict)]
    parts = [_table(["", "value"], scalars)] if scalars else []
    for key, value in d.items():
        if not isinstance(value, dict):
            continue
        parts.append(f"<h3>{escape(str(key))}</h3>")
        if value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for row in value.values() for c in row))
            parts.append(_table(["", *columns], [[name, *(row.get(c) for c in columns)]
                                                 for name, row in value.items()]))
        else:
            parts.append(_table(["", "value"], _flatten(value)))
    return "\n".join(parts)


def _markdown(image, text: str, folder: Path) -> str:
    """The markdown `aelab explain` writes: headings, paragraphs, pipe tables, images by file name."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().splitlines()
        if m := re.fullmatch(r"(#+)\s+(.*)", block.strip()):
            level = min(len(m.group(1)) + 2, 6)
            out.append(f"<h{level}>{escape(m.group(2))}</h{level}>")
        elif all(line.lstrip().startswith("|") for line in lines):
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
            cells = [row for row in cells if not all(set(c) <= set(":- ") for c in row)]
            out.append(_table(cells[0], cells[1:]))
        elif m := re.fullmatch(r"!\[(.*?)\]\((.*?)\)", block.strip()):
            path = folder / Path(m.group(2)).name  # a file name only: nothing outside the folder
            out.append(image(path, m.group(1)) if _present(path) else "")
        elif re.fullmatch(r"\*[^*].*\*", block.strip()):
            continue  # an image caption; the figure carries it already
        else:
            out.append(f"<p>{escape(block.strip())}</p>")
    return "\n".join(out)


def _present(path: Path) -> bool:
    """Something is there (a file, or a symlink the reader will refuse)."""
    return path.exists() or path.is_symlink()


def _pngs(run: RunDir, folder: Path, pattern: str = "*.png") -> list[Path]:
    """PNG files of a run's subfolder, sorted; the folder itself must not be a symlink."""
    if not _present(folder):
        return []
    check_inside(folder, run.path)
    return sorted(folder.glob(pattern))[:MAX_IMAGES]


def build_report(run_dir: str | Path, skipped: list[str] | None = None) -> str:
    """The HTML page for a run folder; raises `RunError` when it is not one.

    An image aelab refuses to read (a symlink, not a PNG, too large) raises too, unless `skipped`
    is a list: then the page notes it and the reason is appended there.
    """
    run = RunDir(run_dir)

    def image(path: Path, caption: str) -> str:
        return _image(run, path, caption, skipped)

    cfg, _ = run.read_config()  # validates the folder
    saved = run.read_saved_config()
    metrics = run.read_metrics()
    title = f"aelab run {run.path.resolve().name}"
    s = [f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
         f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
         f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
         f"<h1>{escape(title)}</h1>",
         f'<p class="muted">preset {escape(cfg.preset)}, {len(metrics)} of {cfg.train.epochs} epochs '
         f"finished; folder {escape(str(run.path))}</p>"]

    s.append('<h2 id="losses">Loss per epoch</h2>')
    if metrics:
        s.append(_table(list(METRIC_COLUMNS), [[r.get(c) for c in METRIC_COLUMNS] for r in metrics],
                        "metrics"))
    else:
        s.append('<p class="muted">no finished epoch yet (metrics.jsonl is empty)</p>')
    if _present(run.figures / "loss.png"):
        s.append(image(run.figures / "loss.png", "loss per epoch"))

    shown = {"loss.png"}
    s.append('<h2 id="results">Reconstructions</h2>')
    for name, caption in (("result_input.png", "validation input"),
                          ("result_output.png", "final reconstruction")):
        if _present(run.figures / name):
            shown.add(name)
            s.append(image(run.figures / name, caption))
    for path in _pngs(run, run.figures, "epoch_[0-9][0-9][0-9].png"):
        shown.add(path.name)
        s.append(image(path, f"epoch {int(path.stem.split('_')[1])}"))

    samples = _pngs(run, run.path / "samples")
    if samples:
        s.append('<h2 id="samples">Samples per sampler</h2>')
        s += [image(p, f"sampler {p.stem}") for p in samples]
    others = [p for p in _pngs(run, run.figures) if p.name not in shown]
    if others:
        s.append('<h2 id="figures">Other figures</h2>')
        s += [image(p, p.stem.replace("_", " ")) for p in others]

    evaluation = run.path / "evaluation.json"
    if _present(evaluation):
        s.append('<h2 id="evaluation">Evaluation</h2>')
        s.append(_json_tables(check_evaluation(run.read_json(evaluation), str(evaluation))))
    explain = run.path / "explain" / "explain.md"
    if _present(explain):
        s.append('<h2 id="explain">Explain: the latent space</h2>')
        s.append(_markdown(image, run.read_text(explain), explain.parent))

    s.append('<h2 id="config">Config</h2>')
    s.append(_table(["key", "value"], _flatten(saved), "config"))
    s.append("</body></html>\n")
    return "\n".join(s)


def write_report(run_dir: str | Path, skipped: list[str] | None = None) -> Path:
    """Write `RUN_DIR/report.html` (atomically) and return its path; `skipped` as in `build_report`."""
    html = build_report(run_dir, skipped)
    path = Path(run_dir) / "report.html"
    atomic_write_bytes(path, html.encode("utf-8"))
    return path
