"""Defects a new user met: silent narrow widths, help texts that drifted from the code, a clipped
loss label and a report wider than a phone (found by following the README as a new user).

The browser test needs /usr/bin/chromium and Playwright (see tests/test_report.py); it is skipped
without chromium or with AELAB_SKIP_BROWSER=1.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

from aelab import resolve_config
from aelab.cli import main
from aelab.config import ModelConfig
from aelab.models import model_warning
from aelab.training import train

CHROMIUM = Path("/usr/bin/chromium")


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse's line breaks undone


@pytest.mark.parametrize("architecture", ["dense", "dense-linear"])
def test_a_small_code_without_a_width_warns_with_the_widths_and_the_flag(architecture):
    warning = model_warning(ModelConfig(architecture=architecture, latent_dim=2))
    assert "784-8-4-2" in warning and "--width-dim 128" in warning and "512-256" in warning
    for quiet in (ModelConfig(architecture=architecture, latent_dim=128),
                  ModelConfig(architecture=architecture, latent_dim=8),  # 784-32-16-8: a choice, not a trap
                  ModelConfig(architecture=architecture, latent_dim=2, width_dim=128)):
        assert "--width-dim" not in (model_warning(quiet) or "")


def test_the_train_and_models_help_say_which_width_gives_the_tutorials(capsys):
    for argv in (["train"], ["models"]):
        assert "128 gives the tutorial's 512, 256" in _help(argv, capsys)


def test_the_components_help_of_every_command_is_the_samplers_own_default(capsys):
    from aelab.samplers import GMMSampler
    from aelab.samplers.fitting import VAE_GMM

    default = inspect.signature(GMMSampler).parameters["n_components"].default
    for argv in (["compare"], ["evaluate"], ["sample"]):
        text = _help(argv, capsys)
        assert f"gmm: mixture components (default {default}," in text and "default 400" not in text, argv
    assert f"for a VAE {VAE_GMM['n_components']}" in _help(["evaluate"], capsys)


def test_the_evaluate_help_names_the_samplers_it_runs_by_default(capsys):
    text = _help(["evaluate"], capsys)
    assert "every sampler that applies" not in text
    assert "normal, gaussian and gmm for an autoencoder; prior, gaussian and gmm for a VAE" in text
    assert "flow and diffusion (and two-stage for a VAE)" in text and "only when named" in text


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, small_mnist) -> Path:
    """A 1-epoch VAE run (the longest loss label) with an evaluation table and its report."""
    out = tmp_path_factory.mktemp("user-fixes") / "vae"
    train(resolve_config("vae", {"epochs": 1, "device": "cpu"}), out, data=small_mnist, quiet=True,
          log=lambda s: None)
    evaluation = {"run": str(out), "n_samples": 16, "classifier_test_accuracy": 0.98,
                  "reconstruction": {"model": {"mse": 0.0123456789, "psnr": 19.5, "ssim": 0.71}},
                  "samples": {name: {"fid": 123.456789, "precision": 0.5, "recall": 0.25, "confident": 0.8,
                                     "classes_present": 7, "nn_distance": 4.25}
                              for name in ("prior", "gaussian", "gmm-with-a-rather-long-sampler-name")}}
    (out / "evaluation.json").write_text(json.dumps(evaluation))
    assert main(["report", str(out)]) == 0
    return out


def test_the_vae_loss_labels_fit_inside_the_figure(vae_run):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from aelab.figures import loss_figure

    metrics = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
    fig = loss_figure(metrics, "vae: loss per epoch")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box, renderer = fig.bbox, canvas.get_renderer()
    for ax in fig.axes:
        for text in (ax.yaxis.label, ax.title):
            extent = text.get_window_extent(renderer)
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
            assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()
    label = fig.axes[0].get_ylabel()
    assert label.replace("\n", " ") == "loss: negative ELBO per image (reconstruction + beta KL)"


@pytest.mark.skipif(not CHROMIUM.is_file() or os.environ.get("AELAB_SKIP_BROWSER") == "1",
                    reason="needs /usr/bin/chromium (AELAB_SKIP_BROWSER=1 skips it)")
def test_the_report_needs_no_sideways_scroll_on_a_phone(vae_run):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 375, "height": 812})
            page.goto((vae_run / "report.html").resolve().as_uri())
            scroll, client = page.evaluate("[document.documentElement.scrollWidth, "
                                           "document.documentElement.clientWidth]")
            images = page.evaluate("Array.from(document.images).map(i => i.getBoundingClientRect().right)")
        finally:
            browser.close()
    assert client == 375 and scroll <= client, (scroll, client)
    assert images and max(images) <= client
