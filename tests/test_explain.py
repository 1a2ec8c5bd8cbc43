"""Tests for aelab.explain and aelab.latent_figures on codes whose answer is known."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from aelab.errors import AelabError
from aelab.explain import latent_stats, noise_vs_real_distances, verdict, write_explain

N_DIMS, N_DEAD, SHIFT = 64, 20, 0.5
MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist-subset"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def relu_codes(n: int, seed: int) -> np.ndarray:
    """ReLU-like codes: max(z - 0.5, 0), with the first N_DEAD dims forced dead (all 0)."""
    codes = np.maximum(np.random.default_rng(seed).normal(size=(n, N_DIMS)) - SHIFT, 0.0)
    codes[:, :N_DEAD] = 0.0
    return codes


def fake_labels(n: int) -> np.ndarray:
    return np.arange(n) % 10


def normal(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_DIMS))


def test_relu_codes_stats_match_the_analytic_values():
    stats = latent_stats(relu_codes(4000, 0), fake_labels(4000))
    # an active dim is 0 exactly when z < 0.5: P = Phi(0.5); a dead dim is always 0
    expected_zero = (N_DEAD + (N_DIMS - N_DEAD) * ndtr(SHIFT)) / N_DIMS
    assert stats["zero_share"] == pytest.approx(expected_zero, abs=0.01)
    assert stats["negative_share"] == 0
    assert stats["dead_dims"]["count"] == N_DEAD
    assert stats["dead_dims"]["dims"] == list(range(N_DEAD))
    assert stats["active_dims"] == N_DIMS - N_DEAD
    # N(0,1) mass below 0 (>= 0.5) on active dims, all of it on dead dims
    assert stats["normal_mass_outside_support"] > 0.6
    assert stats["dims_std_in_0.5_2"] == 0  # std of max(z - 0.5, 0) is about 0.41
    assert stats["code_norm_median"] < stats["normal_norm_expected"]
    assert stats["corr_active"]["mean_abs"] < 0.1  # independent by construction
    json.dumps(stats)  # JSON-able as promised


def test_normal_codes_look_like_normal():
    stats = latent_stats(normal(4000, 1), fake_labels(4000))
    assert stats["zero_share"] == 0
    assert stats["negative_share"] == pytest.approx(0.5, abs=0.02)
    assert stats["dead_dims"]["count"] == 0
    assert stats["dims_std_in_0.5_2"] == N_DIMS
    assert stats["median_std"] == pytest.approx(1.0, abs=0.05)
    assert stats["normal_mass_outside_support"] < 0.01
    assert stats["code_norm_median"] == pytest.approx(stats["normal_norm_expected"], rel=0.05)


def test_noise_lands_far_from_relu_codes_but_held_out_codes_do_not():
    train = relu_codes(3000, 2)
    noise = noise_vs_real_distances(train, relu_codes(500, 3), normal(500, 4))
    held_out = noise_vs_real_distances(train, relu_codes(500, 3), relu_codes(500, 5))
    assert noise["ratio_noise_to_real"] > 1.5
    assert held_out["ratio_noise_to_real"] < noise["ratio_noise_to_real"]
    assert held_out["ratio_noise_to_real"] == pytest.approx(1.0, abs=0.1)
    # fixing the sign brings noise closer, but not all the way
    assert 1.0 < noise["ratio_noise_clipped_to_real"] < noise["ratio_noise_to_real"]


def test_distances_reject_mismatched_dims():
    with pytest.raises(AelabError, match="dims"):
        noise_vs_real_distances(relu_codes(50, 0), relu_codes(10, 1), np.zeros((10, 3)))


def test_verdict_states_the_measured_numbers():
    train = relu_codes(3000, 6)
    stats = latent_stats(train, fake_labels(3000))
    dist = noise_vs_real_distances(train, relu_codes(300, 7), normal(300, 8))
    text = verdict(stats, dist)
    assert f"{100 * stats['zero_share']:.0f}%" in text
    assert "never negative" in text
    assert f"{N_DEAD} of {N_DIMS} dims are dead" in text
    assert f"{dist['ratio_noise_to_real']:.1f}x" in text


def test_verdict_does_not_claim_what_normal_codes_lack():
    train = normal(2000, 9)
    stats = latent_stats(train, fake_labels(2000))
    dist = noise_vs_real_distances(train, normal(300, 10), normal(300, 11))
    text = verdict(stats, dist)
    assert "dead" not in text and "never negative" not in text and "extrapolate" not in text
    assert "close to N(0,1)" in text and "roughly centred" not in text


def _check_report(out: Path) -> None:
    md = (out / "explain.md").read_text()
    linked = re.findall(r"\]\(([^)]+)\)", md)
    report = json.loads((out / "explain.json").read_text())
    assert sorted(linked) == sorted(report["figures"])
    for name in linked:
        path = out / name
        assert path.is_file(), f"explain.md links to missing {name}"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name


def test_write_explain_writes_md_json_and_pngs(tmp_path):
    train = relu_codes(1500, 12)
    noise = normal(200, 13)
    images = np.random.default_rng(14).uniform(size=(10, 784))
    md_path = write_explain(tmp_path / "a", train, fake_labels(1500), relu_codes(200, 15), noise,
                            decoded_noise_images=images, decoded_real_images=images[:, ::-1])
    out = md_path.parent
    assert md_path == tmp_path / "a" / "explain.md"
    _check_report(out)
    report = json.loads((out / "explain.json").read_text())
    assert {"code_histogram.png", "dim_stats.png", "noise_distances.png", "pca.png",
            "correlation.png", "decoded.png"} == set(report["figures"])
    assert report["stats"]["dead_dims"]["count"] == N_DEAD
    assert report["verdict"] in md_path.read_text()
    # deterministic given the inputs
    write_explain(tmp_path / "b", train, fake_labels(1500), relu_codes(200, 15), noise,
                  decoded_noise_images=images, decoded_real_images=images[:, ::-1])
    for name in ["explain.md", "explain.json", *report["figures"]]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def _read_idx(name: str) -> np.ndarray:
    with gzip.open(MNIST / name) as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


@pytest.mark.skipif(not MNIST.is_dir(), reason="shared MNIST subset not present")
def test_mnist_pixels_as_stand_in_codes(tmp_path):
    """Pixels are non-negative, mostly 0, with constant border pixels: a ReLU code in spirit."""
    pixels = _read_idx("train-images-idx3-ubyte.gz")[:2000].reshape(2000, -1) / 255.0
    labels = _read_idx("train-labels-idx1-ubyte.gz")[:2000]
    test_pixels = _read_idx("t10k-images-idx3-ubyte.gz")[:300].reshape(300, -1) / 255.0
    stats = latent_stats(pixels, labels)
    assert stats["negative_share"] == 0
    assert stats["zero_share"] > 0.7  # MNIST is ~80% background
    assert stats["dead_dims"]["count"] > 10  # corners are never inked
    noise = np.random.default_rng(0).normal(size=(300, 784))
    md_path = write_explain(tmp_path, pixels, labels, test_pixels, noise)
    _check_report(md_path.parent)
    report = json.loads((tmp_path / "explain.json").read_text())
    assert report["distances"]["ratio_noise_to_real"] > 1.5
    assert report["stats"]["label_variance_share"] > 0.05
