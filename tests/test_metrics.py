"""Tests for aelab.metrics on the real MNIST subset (12,000 train, 10,000 official test)."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aelab.classifier import load_or_train_classifier
from aelab.errors import AelabError
from aelab.metrics import (
    frechet_distance,
    pca_baseline,
    reconstruction_metrics,
    sample_scores,
)
from aelab.scoring import SampleScorer, classifier_features, precision_recall

# `mnist` (conftest.py): the real subset, 12,000 train and the official 10,000 test digits


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifier(mnist, cache_dir):
    return load_or_train_classifier(mnist, cache_dir)  # (model, test accuracy)


@pytest.fixture(scope="module")
def test_floats(mnist):
    return mnist.test_images.float() / 255  # (10000, 28, 28) in [0, 1]


def uniform_noise(n, seed=0):
    return torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_classifier_accuracy_and_cache(mnist, cache_dir, classifier):
    model, accuracy = classifier
    assert accuracy >= 0.97
    (weights,) = (cache_dir / "classifiers").glob("mnist-*.safetensors")
    assert len(weights.stem.split("-")[-1]) == 12
    info = json.loads(weights.with_suffix(".json").read_text())
    assert info["test_accuracy"] == accuracy
    cached, cached_accuracy = load_or_train_classifier(mnist, cache_dir)  # a load, not a retrain
    assert cached_accuracy == accuracy
    x = mnist.test_images[:100].float() / 255
    torch.testing.assert_close(cached(x), model(x))


def _tiny(mnist, name, n_train=256, n_test=100):
    """A few real digits under a dataset name of their own: a 1-epoch classifier takes a second."""
    return SimpleNamespace(name=name, train_images=mnist.train_images[:n_train],
                           train_labels=mnist.train_labels[:n_train],
                           test_images=mnist.test_images[:n_test], test_labels=mnist.test_labels[:n_test])


def test_corrupt_cache_is_retrained(mnist, tmp_path):
    small = _tiny(mnist, "tiny")
    load_or_train_classifier(small, tmp_path, epochs=1)
    (weights,) = (tmp_path / "classifiers").glob("tiny-*.safetensors")
    weights.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="retraining"):
        model, accuracy = load_or_train_classifier(small, tmp_path, epochs=1)
    assert 0 <= accuracy <= 1 and model(torch.zeros(2, 28, 28)).shape == (2, 10)
    assert weights.stat().st_size > 1000  # rewritten


def _nan_weights(weights):
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    state[next(iter(state))] = torch.full_like(state[next(iter(state))], float("nan"))
    save_file(state, str(weights))


def _weights_a_symlink(weights):
    """The entry points at a valid weights file elsewhere: still refused (never followed)."""
    elsewhere = weights.with_name("elsewhere.safetensors")
    weights.rename(elsewhere)
    weights.symlink_to(elsewhere)


def _json_a_symlink(weights):
    info = weights.with_suffix(".json")
    info.unlink()
    info.symlink_to("/etc/hostname")


CACHE_DAMAGES = {
    "NaN weights": _nan_weights,
    "weights a symlink": _weights_a_symlink,
    "weights a FIFO": lambda w: (w.unlink(), os.mkfifo(w)),
    "accuracy not a number": lambda w: w.with_suffix(".json").write_text('{"test_accuracy": "high"}'),
    "accuracy above 1": lambda w: w.with_suffix(".json").write_text('{"test_accuracy": 7}'),
    "json nested deep": lambda w: w.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000),
    "json a symlink": _json_a_symlink,
}


@pytest.mark.parametrize("damage", CACHE_DAMAGES)
def test_a_damaged_or_hostile_cache_entry_is_retrained_never_followed(mnist, tmp_path, damage):
    small = _tiny(mnist, "tiny")
    load_or_train_classifier(small, tmp_path, epochs=1)
    (weights,) = (tmp_path / "classifiers").glob("tiny-*.safetensors")
    CACHE_DAMAGES[damage](weights)
    with pytest.warns(UserWarning, match="retraining the classifier"):
        model, accuracy = load_or_train_classifier(small, tmp_path, epochs=1)
    assert 0 <= accuracy <= 1 and torch.isfinite(model(torch.zeros(2, 28, 28))).all()
    assert weights.is_file() and not weights.is_symlink()  # written afresh, as a file of its own
    assert load_or_train_classifier(small, tmp_path, epochs=1)[1] == accuracy  # and read back


def test_a_symlinked_cache_folder_is_never_written_through(mnist, tmp_path):
    small = _tiny(mnist, "tiny")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "classifiers").symlink_to(elsewhere)
    with pytest.warns(UserWarning, match="not cached"):
        _, accuracy = load_or_train_classifier(small, tmp_path / "cache", epochs=1)
    assert 0 <= accuracy <= 1 and list(elsewhere.iterdir()) == []


def test_cache_key_holds_the_training_recipe(mnist, tmp_path):
    small = _tiny(mnist, "tiny")
    load_or_train_classifier(small, tmp_path, epochs=1)
    load_or_train_classifier(small, tmp_path, epochs=2)           # not the 1-epoch weights
    load_or_train_classifier(small, tmp_path, epochs=1, seed=1)
    load_or_train_classifier(small, tmp_path, epochs=1)           # a load: no fourth file
    infos = [json.loads(p.read_text()) for p in (tmp_path / "classifiers").glob("tiny-*.json")]
    assert sorted((i["epochs"], i["seed"]) for i in infos) == [(1, 0), (1, 1), (2, 0)]


def test_default_cache_dir_is_cache_root(mnist):
    from aelab.data import cache_root  # conftest points $AELAB_CACHE at a temporary folder

    small = _tiny(mnist, "tiny2", n_train=128, n_test=64)
    load_or_train_classifier(small, epochs=1)
    assert len(list((cache_root() / "classifiers").glob("tiny2-*.safetensors"))) == 1


def test_fid_real_vs_real_noise_and_itself(test_floats, classifier):
    model, _ = classifier
    # random halves: the official test set's first 5,000 digits are cleaner than its last
    # 5,000 (LeCun), so test[:5000] vs test[5000:] is not a same-distribution pair (FID ~ 41)
    order = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    a, b = test_floats[order[:5000]], test_floats[order[5000:]]
    real_vs_real = frechet_distance(a, b, model)  # measured 2.4
    real_vs_noise = frechet_distance(a, uniform_noise(5000), model)  # measured ~1100
    assert 0 < real_vs_real < 5.0
    assert real_vs_noise > 100 * real_vs_real
    assert abs(frechet_distance(a[:2000], a[:2000], model)) < 1e-3


def test_reconstruction_metrics_identical_and_noisy(test_floats):
    x = test_floats[:500]
    same = reconstruction_metrics(x, x.clone())
    assert same["mse"] == 0 and same["ssim"] == pytest.approx(1.0, abs=1e-4) and same["psnr"] > 60
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    scores = reconstruction_metrics(x.reshape(500, 784), noisy.reshape(500, 784), batch_size=64)
    assert scores["ssim"] < 0.8 and 0.01 < scores["mse"] < 0.05
    assert scores["psnr"] == pytest.approx(10 * np.log10(1 / scores["mse"]), rel=1e-3)


def test_reconstruction_metrics_reject_bad_input(test_floats):
    x = test_floats[:10]
    with pytest.raises(AelabError, match=r"\[0, 1\]"):
        reconstruction_metrics(x, x * 255)
    with pytest.raises(AelabError, match="differ"):
        reconstruction_metrics(x, x[:5])
    with pytest.raises(AelabError, match="dtype torch.int64"):
        reconstruction_metrics(x, x.long())


def test_sample_scores_real_digits_vs_noise(mnist, test_floats, classifier):
    model, _ = classifier
    real = sample_scores(test_floats[:2000], model, mnist.train_images)
    assert real["confident_share"] > 0.9 and real["classes_present"] == 10
    assert sum(real["class_histogram"]) == 2000
    assert 3 < real["nn_train_distance_median"] < 10  # test digits are new, not copies
    noise = sample_scores(uniform_noise(2000), model, mnist.train_images)
    assert noise["confident_share"] < 0.5 * real["confident_share"]
    assert noise["nn_train_distance_mean"] > 2 * real["nn_train_distance_mean"]


def test_nn_distance_of_training_images_is_zero(mnist, classifier):
    model, _ = classifier
    scores = sample_scores(mnist.train_images[:300].float() / 255, model, mnist.train_images)
    assert scores["nn_train_distance_mean"] == 0 and scores["nn_train_distance_median"] == 0


def test_precision_recall_of_real_digits_noise_and_a_collapse(mnist, test_floats, classifier):
    model, _ = classifier
    scorer = SampleScorer(model, test_floats, mnist.train_images)  # every test digit is the reference
    real = scorer.score(mnist.train_images[:2000].float() / 255)   # new digits of the same kind
    assert real["precision"] > 0.8 and real["recall"] > 0.8         # measured 0.88, 0.87
    singles = sample_scores(mnist.train_images[:2000].float() / 255, model, mnist.train_images)
    assert {k: real[k] for k in singles} == singles                 # the same measures as alone
    noise = scorer.score(uniform_noise(2000))
    assert noise["precision"] < 0.1 and noise["recall"] == 0        # measured 0.045, 0
    ones = test_floats[mnist.test_labels == 1]  # every sample a "1": realistic but narrow
    collapsed = scorer.score(ones.repeat(2, 1, 1)[:2000])
    assert collapsed["precision"] > 0.9 and collapsed["recall"] < 0.2  # measured 1.0, 0.12
    assert noise["fid"] > collapsed["fid"] > real["fid"]
    features = classifier_features(model, test_floats[:500])
    assert precision_recall(features, features) == {"precision": 1.0, "recall": 1.0}  # itself
    with pytest.raises(AelabError, match="k=3"):
        precision_recall(features[:3], features[:3])


def test_sample_scorer_fid_is_frechet_distance(test_floats, classifier):
    model, _ = classifier
    scorer = SampleScorer(model, test_floats[:2000], test_floats[:10])
    images = test_floats[5000:6000]
    assert scorer.score(images)["fid"] == pytest.approx(frechet_distance(test_floats[:2000], images, model),
                                                        rel=1e-6)


def test_pca_baseline(mnist, test_floats):
    result = pca_baseline(mnist.train_images, test_floats[:2000], n_components=128, seed=0)
    assert 0.002 < result["metrics"]["mse"] < 0.005  # measured 0.0035
    assert result["metrics"]["ssim"] > 0.8
    assert result["reconstructions"].shape == (2000, 28, 28)
    samples = result["sample"](64, seed=0)
    assert samples.shape == (64, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples, result["sample"](64, seed=0))
    with pytest.raises(AelabError, match="n_components=0"):
        pca_baseline(mnist.train_images, test_floats[:10], n_components=0, seed=0)
