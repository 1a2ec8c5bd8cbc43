"""Tests for aelab.samplers on synthetic Gaussians and ReLU codes made from real MNIST digits."""

import re

import numpy as np
import pytest
import torch

from aelab.errors import AelabError, RunError
from aelab.samplers import (
    FlowSampler,
    GaussianSampler,
    GMMSampler,
    NormalSampler,
    TwoStageSampler,
    create_sampler,
    list_samplers,
    load_sampler,
    select_n_components,
)

# small settings, so every sampler fits the 2,000 codes below in about a second
SMALL = {"gmm": {"n_components": 3}, "flow": {"transforms": 2, "hidden": 32, "max_epochs": 3},
         "diffusion": {"hidden": 32, "depth": 1, "steps": 5, "max_epochs": 3},
         "two-stage": {"hidden": 32, "depth": 1, "max_epochs": 3}}
NEURAL = ["flow", "diffusion", "two-stage"]


@pytest.fixture(scope="module")
def fitted(relu_codes):
    """Each sampler fitted once with its SMALL settings (shared by the tests below)."""
    return {name: create_sampler(name, **SMALL.get(name, {})).fit(relu_codes) for name in list_samplers()}


@pytest.fixture(scope="module")
def relu_codes(mnist):
    """ReLU codes (2000, 40) of real digits: 30% dead dims (12), a duplicated column, a constant."""
    images = mnist.train_images[:2000].reshape(2000, -1).double().numpy() / 255.0
    rng = np.random.default_rng(0)
    codes = np.maximum(images @ rng.standard_normal((784, 40)) / 10 - 1, 0)
    codes[:, :11] = 0.0  # dead ReLU units
    codes[:, 11] = 0.5  # a constant unit
    codes[:, 12] = codes[:, 13]  # duplicated column: singular covariance
    return codes.astype(np.float32)


@pytest.mark.parametrize("name", ["normal", "gaussian", "gmm", "prior", *NEURAL])
def test_sample_shape_dtype_and_seed(fitted, name):
    sampler = fitted[name]
    a = sampler.sample(50, seed=1)
    assert a.shape == (50, 40) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, sampler.sample(50, seed=1))
    assert not np.array_equal(a, sampler.sample(50, seed=2))


def test_normal_is_standard_normal(relu_codes):
    samples = NormalSampler().fit(relu_codes).sample(20000, seed=0)
    assert abs(samples.mean()) < 0.01 and abs(samples.std() - 1) < 0.01
    assert samples.min() < 0  # the tutorial's sampler ignores where the codes live


def test_gaussian_recovers_mean_and_covariance():
    rng = np.random.default_rng(0)
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    codes = rng.multivariate_normal(mean, cov, size=20000).astype(np.float32)
    sampler = GaussianSampler(clip="none").fit(codes)
    np.testing.assert_allclose(sampler.mean_, mean, atol=0.03)
    np.testing.assert_allclose(sampler.covariance_, cov, atol=0.05)
    samples = sampler.sample(20000, seed=3)
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), cov, atol=0.08)


def test_gmm_survives_dead_and_duplicated_dims(relu_codes):
    sampler = GMMSampler(n_components=5, random_state=0).fit(relu_codes)
    np.testing.assert_array_equal(sampler.active_dims_, np.arange(12, 40))
    assert sampler.means_.shape == (5, 40) and sampler.covariances_.shape == (5, 40, 40)
    np.testing.assert_allclose(sampler.weights_.sum(), 1.0)
    samples = sampler.sample(500, seed=0)
    assert (samples[:, :11] == 0).all() and (samples[:, 11] == 0.5).all()
    # the density is fitted: sample means track the code means on the active dims
    np.testing.assert_allclose(samples[:, 12:].mean(0), relu_codes[:, 12:].mean(0), atol=0.15)


def test_gmm_on_principal_components(tmp_path, relu_codes):
    sampler = GMMSampler(n_components=3, pca_dims=8, random_state=0).fit(relu_codes)
    active = np.ix_(sampler.active_dims_, sampler.active_dims_)
    for cov in sampler.covariances_:  # a mixture of probabilistic PCA: full rank, symmetric
        np.testing.assert_allclose(cov, cov.T, atol=1e-10)
        assert np.linalg.eigvalsh(cov[active]).min() > 0
    samples = sampler.sample(1000, seed=0)
    assert (samples[:, :11] == 0).all() and (samples[:, 11] == 0.5).all()
    np.testing.assert_allclose(samples[:, 12:].mean(0), relu_codes[:, 12:].mean(0), atol=0.15)
    sampler.save(tmp_path / "ppca.safetensors")
    loaded = load_sampler(tmp_path / "ppca.safetensors")
    assert loaded.pca_dims == 8
    np.testing.assert_array_equal(loaded.covariances_, sampler.covariances_)  # rebuilt exactly
    np.testing.assert_array_equal(loaded.sample(10, seed=1), sampler.sample(10, seed=1))
    # saved as 8 principal axes and 3 covariances of 8 x 8, not 3 of 40 x 40
    full = GMMSampler(n_components=3, pca_dims=None, random_state=0).fit(relu_codes)
    full.save(tmp_path / "full.safetensors")
    sizes = [(tmp_path / f).stat().st_size for f in ("ppca.safetensors", "full.safetensors")]
    assert sizes[0] < 0.4 * sizes[1]
    sampler.pca_dims = None  # refitted without principal components, it saves the full form
    sampler.fit(relu_codes).save(tmp_path / "refit.safetensors")
    refit = load_sampler(tmp_path / "refit.safetensors")
    np.testing.assert_array_equal(refit.covariances_, full.covariances_)
    with pytest.raises(AelabError, match="pca_dims=0"):
        GMMSampler(pca_dims=0)


def test_gmm_whitened_basis_models_the_directions_that_carry_the_variance(tmp_path, relu_codes):
    """A VAE's posterior-collapsed dims: tiny variance; the whitened basis leaves them out."""
    rng = np.random.default_rng(1)
    real = relu_codes[:, np.argsort(relu_codes.std(0))[-6:]]  # the 6 dims of largest variance
    noise = 0.01 * real.std(0).mean() * rng.standard_normal((len(real), 30))
    codes = np.concatenate([real, noise], 1)
    codes = codes.astype(np.float32)
    whitened = GMMSampler(n_components=5, basis="whitened").fit(codes)
    standardized = GMMSampler(n_components=5, pca_dims=6).fit(codes)
    assert whitened.pca_components_.shape[0] <= 6  # the few axes that hold 99.5% of the variance
    top = np.abs(whitened.pca_components_).sum(0)
    assert top[:6].sum() > 100 * top[6:].sum()  # ... in the 6 real dims
    spread = np.abs(standardized.pca_components_)
    assert spread[:, 6:].sum() > spread[:, :6].sum()  # standardized: the noise dims take the axes
    drawn = whitened.sample(4000, seed=0)
    np.testing.assert_allclose(drawn[:, :6].std(0), codes[:, :6].std(0), rtol=0.1)
    np.testing.assert_allclose(np.cov(drawn[:, :6], rowvar=False), np.cov(codes[:, :6], rowvar=False),
                               atol=0.1 * codes[:, :6].var(0).max())
    whitened.save(tmp_path / "w.safetensors")
    loaded = load_sampler(tmp_path / "w.safetensors")
    assert loaded.basis == "whitened"
    np.testing.assert_array_equal(loaded.sample(10, seed=1), whitened.sample(10, seed=1))
    with pytest.raises(AelabError, match="basis='pca'"):
        GMMSampler(basis="pca")


@pytest.mark.parametrize("sampler", [GaussianSampler(clip="observed"),
                                     GMMSampler(n_components=5, clip="observed")])
def test_clip_observed_keeps_relu_codes_non_negative(relu_codes, sampler):
    assert (sampler.fit(relu_codes).sample(2000, seed=0) >= 0).all()
    sampler.clip = "none"
    assert (sampler.sample(2000, seed=0) < 0).any()  # so the clip test above can fail


def test_select_n_components_prefers_the_true_count():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8, size=(5, 4))
    codes = np.concatenate([c + rng.standard_normal((300, 4)) for c in centres])
    assert select_n_components(codes, candidates=(1, 2, 5), random_state=0) == 5
    # reg_covar=1e-6: the default 0.01 (tuned for 400 components) is large for these tight clusters
    assert GMMSampler(n_components="auto", reg_covar=1e-6).fit(codes[::3]).n_components_ in (5, 10)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "many", True])
def test_bad_n_components_names_the_value(bad):
    with pytest.raises(AelabError, match=re.escape(f"n_components={bad!r}")):
        GMMSampler(n_components=bad)


def test_n_components_larger_than_codes(relu_codes):
    with pytest.raises(AelabError, match="n_components=3000"):
        GMMSampler(n_components=3000).fit(relu_codes)


@pytest.mark.parametrize("name", ["normal", "gaussian", "gmm", "prior", *NEURAL])
def test_save_load_round_trip(tmp_path, fitted, name):
    sampler = fitted[name]
    sampler.save(tmp_path / "s.safetensors")
    loaded = load_sampler(tmp_path / "s.safetensors")
    assert type(loaded) is type(sampler) and loaded.get_config() == sampler.get_config()
    np.testing.assert_array_equal(loaded.sample(100, seed=7), sampler.sample(100, seed=7))


def test_corrupt_or_mismatched_file_is_run_error(tmp_path, relu_codes):
    path = tmp_path / "s.safetensors"
    GMMSampler(n_components=2).fit(relu_codes).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="cannot read sampler file"):
        load_sampler(path)
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(RunError):
        load_sampler(path)
    with pytest.raises(RunError):
        load_sampler(tmp_path / "missing.safetensors")
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(3)}, str(path), metadata={"format": "something-else"})
    with pytest.raises(RunError, match="not an aelab sampler file"):
        load_sampler(path)


def test_compact_gmm_file_with_wrong_shapes_is_run_error(tmp_path, relu_codes):
    from safetensors import safe_open
    from safetensors.numpy import save_file
    path = tmp_path / "g.safetensors"
    GMMSampler(n_components=3, pca_dims=8).fit(relu_codes).save(path)
    with safe_open(str(path), framework="numpy") as f:
        meta, arrays = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for name, bad in [("pca_covariances_", arrays["pca_covariances_"][:, :4, :4]),
                      ("active_std_", arrays["active_std_"][:-1]),
                      ("active_dims_", arrays["active_dims_"] + 100)]:
        save_file({**arrays, name: np.ascontiguousarray(bad)}, str(path), metadata=meta)
        with pytest.raises(RunError, match=re.escape(f"{path}: {name}")):
            load_sampler(path)
    save_file(arrays, str(path), metadata=meta)
    assert load_sampler(path).covariances_.shape == (3, 40, 40)  # the unchanged file loads


def test_registry_and_unknown_names():
    assert list_samplers() == ["normal", "gaussian", "gmm", "prior", "flow", "diffusion", "two-stage"]
    message = "unknown sampler 'x'; choose from normal, gaussian, gmm, prior, flow, diffusion, two-stage"
    with pytest.raises(AelabError, match=message):
        create_sampler("x")
    with pytest.raises(AelabError, match="n_components"):
        create_sampler("gaussian", n_components=3)
    with pytest.raises(AelabError, match="clip='maybe'"):
        create_sampler("gmm", clip="maybe")


def test_bad_codes_and_unfitted_use():
    with pytest.raises(AelabError, match=r"\(5,\)"):
        GaussianSampler().fit(np.zeros(5))
    with pytest.raises(AelabError, match="NaN"):
        GaussianSampler().fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(AelabError, match="not fitted"):
        GMMSampler().sample(3, seed=0)
    with pytest.raises(AelabError, match="n=0"):
        NormalSampler().fit(np.eye(3)).sample(0, seed=0)


@pytest.mark.parametrize("name", NEURAL)
def test_neural_samplers_learn_and_keep_dead_dims(fitted, relu_codes, name):
    sampler = fitted[name]
    np.testing.assert_array_equal(sampler.active_dims_, np.arange(12, 40))
    samples = sampler.sample(1000, seed=0)
    assert (samples[:, :11] == 0).all() and (samples[:, 11] == 0.5).all()
    losses = [h["valid_loss"] for h in sampler.history_]
    assert losses[sampler.best_epoch_ - 1] == min(losses) and min(losses) < losses[0]
    if name != "two-stage":  # (a second VAE this briefly trained still draws near the mean)
        # standardized codes: the draws have the codes' scale, dim by dim, within a factor of 2
        ratio = samples[:, 12:].std(0) / relu_codes[:, 12:].std(0)
        assert 0.5 < np.median(ratio) < 2, ratio


def test_flow_keeps_the_best_epoch_and_reloads_it(tmp_path, relu_codes):
    sampler = FlowSampler(transforms=2, hidden=32, max_epochs=6, patience=2, lr=3e-2).fit(relu_codes)
    assert len(sampler.history_) <= 6
    sampler.save(tmp_path / "f.safetensors")
    loaded = load_sampler(tmp_path / "f.safetensors")
    np.testing.assert_array_equal(loaded.network_, sampler.network_)
    # the held-out split is seeded: the reloaded network scores the best epoch's held-out loss
    a = loaded.active_dims_
    z = loaded._whiten(relu_codes[:, a].astype(np.float64) - loaded.mean_[a])
    order = np.random.default_rng(0).permutation(len(z))[:200]
    held_out = loaded._held_out_loss(loaded._network(), torch.from_numpy(z[order].astype(np.float32)))
    assert held_out == pytest.approx(min(h["valid_loss"] for h in sampler.history_), rel=1e-5)


def test_two_stage_learns_its_decoder_variance(relu_codes):
    # Dai & Wipf: the learned variance gamma of p(z|u) falls below the codes' own (1, whitened)
    # as the second VAE fits them; the KL warm-up keeps it from collapsing at gamma = 1
    sampler = TwoStageSampler(hidden=32, depth=1, max_epochs=10, kl_warmup=3, lr=1e-2).fit(relu_codes)
    assert torch.exp(sampler._network().log_gamma).item() < 0.97  # measured 0.94
    assert TwoStageSampler(latent_dim=8, hidden=16, depth=1, max_epochs=1).fit(np.eye(40)[:30]).sample(
        5, seed=0).shape == (5, 40)


@pytest.mark.parametrize("name", NEURAL)
def test_neural_sampler_file_with_a_bad_network_is_run_error(tmp_path, fitted, name):
    from safetensors import safe_open
    from safetensors.numpy import save_file
    path = tmp_path / "n.safetensors"
    fitted[name].save(path)
    with safe_open(str(path), framework="numpy") as f:
        meta, arrays = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    assert {str(a.dtype) for a in arrays.values()} <= {"float32", "float64", "int64"}
    for array, bad in [("network_", arrays["network_"][:-1]), ("mean_", arrays["mean_"].astype(np.float32)),
                       ("variances_", np.full_like(arrays["variances_"], np.nan)),
                       ("components_", arrays["components_"][:-1]),
                       ("active_dims_", arrays["active_dims_"] * 0)]:
        save_file({**arrays, array: np.ascontiguousarray(bad)}, str(path), metadata=meta)
        with pytest.raises(RunError, match=re.escape(f"{path}: {array}")):  # load_sampler checks it
            load_sampler(path)


@pytest.mark.parametrize("name, params", [("flow", {"hidden": 10**7}), ("flow", {"transforms": 10**7}),
                                          ("flow", {"transforms": 60, "hidden": 16000}),
                                          ("diffusion", {"depth": 10**6}), ("diffusion", {"hidden": 12000}),
                                          ("two-stage", {"hidden": 10**7})])
def test_neural_sampler_file_asking_for_a_huge_network_is_refused_before_building_it(tmp_path, fitted, name,
                                                                                      params):
    # settings forged in the header: building the network to count its numbers would allocate
    # terabytes (or create millions of modules); the count comes from small builds instead
    import json

    from safetensors import safe_open
    from safetensors.numpy import save_file
    path = tmp_path / "n.safetensors"
    fitted[name].save(path)
    with safe_open(str(path), framework="numpy") as f:
        meta, arrays = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    forged = json.dumps({**json.loads(meta["params"]), **params})
    save_file(arrays, str(path), metadata={**meta, "params": forged})
    with pytest.raises(RunError, match="at most|network_ holds"):  # in 0.03 s, where a build was killed
        load_sampler(path)


@pytest.mark.parametrize("name, bad", [("flow", {"transforms": 0}), ("flow", {"hidden": 2.5}),
                                       ("diffusion", {"steps": 5000}), ("diffusion", {"ema": 1.0}),
                                       ("two-stage", {"latent_dim": -1}), ("flow", {"valid_share": 1}),
                                       ("two-stage", {"kl_warmup": -1}), ("gmm", {"max_iter": 0}),
                                       ("diffusion", {"max_epochs": True}), ("two-stage", {"lr": 0})])
def test_neural_sampler_bad_parameters_name_the_value(name, bad):
    (key, value), = bad.items()
    with pytest.raises(AelabError, match=re.escape(f"{key}={value!r}")):
        create_sampler(name, **bad)
