"""report.html: one self-contained page, checked in headless Chromium.

The browser test needs Debian's chromium (`apt-get install chromium chromium-driver`) and
Playwright from PyPI, which drives /usr/bin/chromium (no browser is downloaded). Without them it
fails, unless AELAB_SKIP_BROWSER=1 says to skip it.
"""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from aelab import resolve_config
from aelab.cli import main
from aelab.explain import write_explain
from aelab.figures import grid_figure, save_figure
from aelab.report import build_report, format_number, write_report
from aelab.training import train

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
EVIL = "<script>alert('x')</script> & \"quotes\""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_mnist) -> Path:
    """A real 2-epoch run plus the extras other commands add: samples, evaluation, explain."""
    out = tmp_path_factory.mktemp("report") / "run"
    run = train(resolve_config("seed", {"epochs": 2, "device": "cpu"}), out, data=small_mnist,
                quiet=True, log=lambda s: None)
    save_figure(grid_figure(run.sample(16, sampler="normal").numpy(), "normal"),
                out / "samples" / "normal.png")
    evaluation = {"run": str(out), "n_samples": 16, "classifier_test_accuracy": 0.987654321,
                  "reconstruction": {"model": {"mse": 0.0123456789, "psnr": 19.5}},
                  "samples": {"sampler normal": {"fid": 123.456789, "classes_present": 7},
                              EVIL: {"fid": 1.5, "classes_present": 10}}}
    (out / "evaluation.json").write_text(json.dumps(evaluation))
    codes = run.encode(small_mnist.train_images[:500]).numpy()
    valid = run.encode(small_mnist.test_images[:200]).numpy()
    noise = np.random.default_rng(0).standard_normal(valid.shape).astype(np.float32)
    write_explain(out / "explain", codes, small_mnist.train_labels[:500].numpy(), valid, noise)
    return out


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_is_self_contained_and_escaped(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    srcs = [a.get("src", "") for t, a in parser.tags if t == "img"]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)" in html
    pngs = [p for folder in ("figures", "samples", "explain") for p in (run_dir / folder).glob("*.png")]
    assert len(pngs) >= 6 + 3  # loss, 2 results, 2 epoch grids, 1 sample grid, explain figures
    assert len(srcs) == len(pngs)  # every picture of the run, each once
    assert "Why N(0, I) noise decodes to no digit" in html  # the explain page's verdict section
    assert not (run_dir / ".report.html.tmp").exists()


def test_missing_run_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aelab: error: ") and err.count("\n") == 1


def test_report_in_headless_chromium(run_dir):
    if os.environ.get("AELAB_SKIP_BROWSER") == "1":
        pytest.skip("AELAB_SKIP_BROWSER=1")
    chromium = _chromium()
    assert chromium, "no chromium: apt-get install chromium chromium-driver (or AELAB_SKIP_BROWSER=1)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install playwright (or AELAB_SKIP_BROWSER=1)")
    report = write_report(run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(report.resolve().as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.alt])")
        rows = page.eval_on_selector_all(
            "table.metrics tbody tr",
            "trs => trs.map(tr => [...tr.cells].map(td => [td.textContent, td.dataset.value]))")
        header = page.eval_on_selector_all("table.metrics th", "ths => ths.map(th => th.textContent)")
        body = page.inner_text("body")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.evaluate("window.scrollTo(0, 0)")
        first_screen = page.evaluate("""() => ['#summary', '#toc'].map(sel => {
            const r = document.querySelector(sel).getBoundingClientRect();
            return r.top >= 0 && r.bottom <= window.innerHeight && r.width > 0; })""")
        page_height = page.evaluate("document.body.scrollHeight")
        browser.close()

    assert len(images) >= 6
    broken = [alt for complete, w, h, alt in images if not (complete and w > 0 and h > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert header == ["epoch", "training loss", "validation loss", "validation MSE", "seconds"]
    assert first_screen == [True, True]  # summary and contents in the first 1280x800 screen
    assert page_height < 12_000, page_height
    assert len(rows) == len(metrics) == 2
    for row, record in zip(rows, metrics):
        for (text, exact), key in zip(row, ["epoch", "train_loss", "valid_loss", "valid_mse", "seconds"]):
            assert text == format_number(record[key]), (key, text, record[key])
            assert float(exact) == record[key]  # the full value travels in data-value
    assert format_number(0.987654321) == "0.9877" and "0.9877" in body and "123.5" in body  # evaluation
    assert "confident_share" not in body and "nn_train_distance" not in body and "classes_present" not in body
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
    assert not problems, problems


def test_report_leads_with_a_summary_and_folds_the_middle_epochs(tmp_path, small_mnist):
    out = tmp_path / "run"
    train(resolve_config("seed", {"epochs": 4, "latent_dim": 8, "device": "cpu"}), out, data=small_mnist,
          quiet=True, log=lambda s: None)
    for name in ("gmm", "normal", "gaussian"):
        save_figure(grid_figure(np.zeros((4, 28, 28)), name), out / "samples" / f"{name}.png")
    html = (out / "report.html").read_text()
    summary = html[html.index('id="summary"'):html.index('id="toc"')]
    assert "dense autoencoder, 8-d code, " in summary and " parameters (preset seed)" in summary
    assert "4 of 4 epochs" in summary and "validation MSE" in summary
    final = json.loads((out / "final.json").read_text())  # the number load_run's reconstruct gives
    assert f"reconstruction MSE {format_number(final['reconstruction']['test_mse'])} on the official test" \
        in summary
    assert html.index('alt="epoch 1"') < html.index('alt="epoch 4"') < html.index("<details>") \
        < html.index('alt="epoch 2"')
    assert html.count("<details>") == 1
    html = build_report(out)
    assert html.index("sampler normal") < html.index("sampler gaussian") < html.index("sampler gmm")
    assert not (out / ".lock").exists()  # a finished run keeps no lock file
