"""report.html: one self-contained page about a run folder.

    aelab report runs/seed        # -> runs/seed/report.html (every command that adds to a run
                                  #    refreshes it: train, sample, explain, evaluate)

A summary and a table of contents come first, then the losses, reconstructions, samples,
evaluation, explain figures, config and a glossary. Images are embedded as base64 data URIs and a
Content-Security-Policy forbids any other source, so the file can be mailed or archived alone
and opening it makes no network request.

    html.py    numbers, tables, embedded images, the explain markdown
    names.py   human names for metrics, the glossary, the samplers' teaching order
    page.py    the page itself
"""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write_bytes
from .html import format_number
from .page import build_report

__all__ = ["write_report", "build_report", "format_number", "refresh_report"]


def write_report(run_dir: str | Path, skipped: list[str] | None = None) -> Path:
    """Write `RUN_DIR/report.html` (atomically) and return its path; `skipped` as in `build_report`."""
    html = build_report(run_dir, skipped)
    path = Path(run_dir) / "report.html"
    atomic_write_bytes(path, html.encode("utf-8"))
    return path


def refresh_report(run_dir: str | Path, log) -> None:
    """Rewrite the report after a command added to the run; a file it must leave out is one warning."""
    skipped: list[str] = []
    write_report(run_dir, skipped)
    if skipped:
        log(f"aelab: warning: report.html left out {len(skipped)} file(s): {skipped[0]}")
