"""HTML pieces of the report: numbers, cells, tables, embedded images, the explain markdown.

Everything a run folder holds is escaped; images are embedded as data URIs after the run
folder's reader checked them (no symlinks, PNG only, bounded size).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..rundir import RunDir

__all__ = ["CSP", "CSS", "format_number", "table", "image", "markdown", "present"]

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:1.2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin:.2em 0 .4em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:.4em;vertical-align:top;max-width:calc(100% - .8em)}
img{max-width:100%;height:auto;box-sizing:border-box;border:1px solid #eee}
h1,p,dd,figcaption,summary{overflow-wrap:anywhere}
figcaption{font-size:.9em;color:#555}.muted{color:#777}
.top{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}.summary{flex:3 1 560px}
.summary th{width:9em;background:#f8f8f8}nav.toc{flex:1 1 220px;border:1px solid #ddd;padding:.4em 1em}
nav.toc ol{margin:.3em 0;padding-left:1.3em}details{margin:.6em 0}summary{cursor:pointer;color:#245}
dl.glossary dt{font-weight:600;margin-top:.4em}dl.glossary dd{margin-left:1.5em}"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def format_number(value: Any) -> str:
    """How the page prints a value: 4 significant digits, thousands grouped, the rest as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num" data-value="{value!r}">{escape(format_number(value))}</td>'
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return f"<td>{escape(format_number(value))}</td>"


def table(header: list[str], rows: list[list[Any]], cls: str = "", titles: list[str] | None = None) -> str:
    """A table; `titles` (one per column) become hover texts on the headers."""
    titles = titles or [""] * len(header)
    head = "".join(f'<th title="{escape(t)}">{escape(str(h))}</th>' if t else f"<th>{escape(str(h))}</th>"
                   for h, t in zip(header, titles))
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def present(path: Path) -> bool:
    """Something is there (a file, or a symlink the reader will refuse)."""
    return path.exists() or path.is_symlink()


def image(run: RunDir, path: Path, caption: str, skipped: list[str] | None = None) -> str:
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


def markdown(embed: Callable[[Path, str], str], text: str, folder: Path) -> str:
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
            out.append(table(cells[0], cells[1:]))
        elif m := re.fullmatch(r"!\[(.*?)\]\((.*?)\)", block.strip()):
            path = folder / Path(m.group(2)).name  # a file name only: nothing outside the folder
            out.append(embed(path, m.group(1)) if present(path) else "")
        elif re.fullmatch(r"\*[^*].*\*", block.strip()):
            continue  # an image caption; the figure carries it already
        else:
            out.append(f"<p>{escape(block.strip())}</p>")
    return "\n".join(out)
