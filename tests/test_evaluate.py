"""`aelab explain` and `aelab evaluate` on a real (small) trained run."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from aelab.cli import main
from aelab.presets import resolve_config
from aelab.samplers.fitting import sample_codes
from aelab.training import train


@pytest.fixture(scope="module")
def data(small_mnist, mnist):
    """The 12,000 real training images, validation on 1,000 real test images."""
    return dataclasses.replace(small_mnist, train_images=mnist.train_images,
                               train_labels=mnist.train_labels)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, data):
    """4 epochs, latent 32: digits, if blurry ones."""
    cfg = resolve_config("seed", {"epochs": 4, "seed": 0, "latent_dim": 32})
    return train(cfg, tmp_path_factory.mktemp("eval") / "run", data=data, quiet=True,
                 log=lambda s: None)


def test_preactivation_codes_pass_the_encoders_relu(small_run, small_mnist):
    x = small_mnist.test_images[:64]
    pre = small_run.encode(x, preactivation=True)
    assert (pre < 0).any()
    assert torch.equal(torch.relu(pre), small_run.encode(x))


def test_fitted_sampler_draws_codes_like_the_encoders(small_run, small_mnist, data):
    codes = sample_codes(small_run, "gaussian", 500, seed=1, data=data)
    real = small_run.encode(small_mnist.test_images[:500])
    assert codes.shape == (500, 32) and (codes >= 0).all()
    # real codes are about half zeros; draws through the same ReLU must be too, N(0, I) is not
    assert abs((codes == 0).float().mean() - (real == 0).float().mean()) < 0.15
    assert (small_run.path / "samplers" / "gaussian.safetensors").is_file()
    again = sample_codes(small_run, "gaussian", 500, seed=1, data=data)
    assert torch.equal(codes, again)  # reloaded from the run folder, same seed, same codes


def test_a_vaes_gmm_models_the_axes_that_carry_the_variance(small_run, data, tmp_path):
    from aelab.samplers import load_sampler
    from aelab.samplers.fitting import fitted_sampler

    vae = train(resolve_config("vae", {"epochs": 1, "latent_dim": 32}), tmp_path / "vae", data=data,
                quiet=True, log=lambda s: None)
    gmm = fitted_sampler(vae, "gmm", data, n_components=20)  # the caller's count, the VAE's basis
    saved = load_sampler(vae.path / "samplers" / "gmm.safetensors").get_config()
    assert saved == gmm.get_config() and saved["basis"] == "whitened" and saved["n_components"] == 20
    assert saved["reg_covar"] == 0.005
    # the kept axes are the few that hold 99.5% of the codes' variance, not every active dim
    assert gmm.pca_components_.shape[0] < len(gmm.active_dims_)
    ae = fitted_sampler(small_run, "gmm", data, n_components=20)
    assert ae.get_config()["basis"] == "standardized" and ae.get_config()["reg_covar"] == 0.01


def test_a_loaded_sampler_is_reused_until_its_file_changes(small_run, data, monkeypatch, tmp_path):
    import shutil

    import aelab.samplers.fitting as fitting
    from aelab.run import load_run

    shutil.copytree(small_run.path, tmp_path / "run")  # damaged below: not the shared run
    run = load_run(tmp_path / "run")  # a fresh Run: nothing loaded yet
    first = sample_codes(run, "gaussian", 8, seed=3, data=data)  # fitted (or loaded) once
    loads = []
    real_load = fitting.load_sampler
    monkeypatch.setattr(fitting, "load_sampler", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    for _ in range(3):
        assert torch.equal(sample_codes(run, "gaussian", 8, seed=3, data=data), first)
    assert loads == []  # the explorer's every request: no file read, no revalidation
    path = run.path / "samplers" / "gaussian.safetensors"
    run.loaded_samplers["gaussian"][1].save(path, fitted_on=run.weights_digest)  # rewritten: read again
    assert torch.equal(sample_codes(run, "gaussian", 8, seed=3, data=data), first) and len(loads) == 1
    path.write_bytes(b"garbage")  # damaged after loading: refused, never served from memory
    with pytest.raises(Exception, match="delete it to fit the gaussian sampler again"):
        sample_codes(run, "gaussian", 8, seed=3, data=data)


def test_a_sampler_that_cannot_be_saved_is_fitted_once_per_process(small_run, data, monkeypatch, tmp_path,
                                                                   capsys):
    # a read-only or full run folder: the explorer would fit a flow (minutes) on every request
    import shutil

    from aelab.errors import RunError
    from aelab.run import load_run
    from aelab.samplers.gaussian import GaussianSampler

    shutil.copytree(small_run.path, tmp_path / "run")
    run = load_run(tmp_path / "run")
    (run.path / "samplers" / "gaussian.safetensors").unlink(missing_ok=True)

    def refuse(self, path, fitted_on=None):
        raise RunError("read-only file system")
    monkeypatch.setattr(GaussianSampler, "save", refuse)
    first = sample_codes(run, "gaussian", 4, seed=1, data=data)
    assert capsys.readouterr().err.count("fitting the gaussian sampler") == 1
    assert torch.equal(sample_codes(run, "gaussian", 4, seed=1, data=data), first)
    assert "fitting" not in capsys.readouterr().err


def test_a_saved_sampler_is_current_only_with_todays_settings(small_run, data, monkeypatch, tmp_path):
    """What the explorer calls "ready": the file holds this sampler with the settings fitted_sampler
    would use now, read from its header; older defaults, another sampler or damage are not."""
    import shutil

    import aelab.samplers.fitting as fitting
    from aelab.run import load_run

    shutil.copytree(small_run.path, tmp_path / "run")
    run = load_run(tmp_path / "run")
    path = run.path / "samplers" / "gaussian.safetensors"
    assert fitting.saved_is_current(run, "normal")  # nothing to fit
    if path.exists():
        path.unlink()
    assert not fitting.saved_is_current(run, "gaussian")  # no file
    sample_codes(run, "gaussian", 4, data=data)
    assert fitting.saved_is_current(run, "gaussian")
    real = fitting.sampler_defaults
    monkeypatch.setattr(fitting, "sampler_defaults", lambda kind, name: {"reg_covar": 1e-3})
    assert not fitting.saved_is_current(run, "gaussian")  # fitted under other defaults than today's
    monkeypatch.setattr(fitting, "sampler_defaults", real)
    shutil.copy(path, run.path / "samplers" / "gmm.safetensors")  # another sampler's file
    assert not fitting.saved_is_current(run, "gmm")
    path.write_bytes(b"garbage")
    assert not fitting.saved_is_current(run, "gaussian")


def test_a_sampler_fitted_on_other_weights_is_fitted_again(small_run, data, tmp_path, capsys):
    # `aelab sample` while `train --resume` trains on: the file it saves belongs to the old
    # weights; afterwards it must not be reused for the new ones (nor one from before digests)
    import shutil

    from safetensors.torch import load_file, save_file

    import aelab.samplers.fitting as fitting
    from aelab.run import load_run
    from aelab.samplers import load_sampler

    shutil.copytree(small_run.path, tmp_path / "run")
    run = load_run(tmp_path / "run")
    path = run.path / "samplers" / "gaussian.safetensors"
    path.unlink(missing_ok=True)
    old = sample_codes(run, "gaussian", 4, data=data)
    assert fitting.saved_is_current(run, "gaussian")
    weights = load_file(run.path / "model.safetensors")
    weights["encoder.0.0.weight"] *= 1.5  # the run trained further: other codes
    save_file(weights, run.path / "model.safetensors")
    newer = load_run(run.path)
    assert newer.weights_digest != run.weights_digest
    assert not fitting.saved_is_current(newer, "gaussian")
    capsys.readouterr()
    refit = sample_codes(newer, "gaussian", 4, data=data)
    assert "fitted on other weights" in capsys.readouterr().err and not torch.equal(refit, old)
    assert fitting.saved_is_current(newer, "gaussian")
    codes = newer.encode(data.train_images, preactivation=True).numpy()  # what the dense AE fits
    assert np.allclose(load_sampler(path).mean_, codes.mean(axis=0), atol=1e-4)  # the new codes' mean
    load_sampler(path).save(path)  # as an aelab from before the digest wrote it
    assert not fitting.saved_is_current(newer, "gaussian")


def test_prior_refused_for_an_autoencoder(small_run, capsys):
    assert main(["sample", str(small_run.path), "--sampler", "prior", "--n", "4"]) == 1
    assert "VAE runs only" in capsys.readouterr().err


def test_explain_states_the_mechanism_with_the_runs_numbers(small_run, monkeypatch, data):
    import aelab.samplers.fitting as fitting
    from aelab.explain import explain_run

    monkeypatch.setattr(fitting, "run_data", lambda run: data)
    md = explain_run(small_run.path)
    stats = json.loads((md.parent / "explain.json").read_text())
    zero_share = stats["stats"]["zero_share"]
    assert 0.05 < zero_share < 0.95 and stats["stats"]["negative_share"] == 0
    assert f"{round(100 * zero_share)}%" in md.read_text()
    assert stats["distances"]["ratio_noise_to_real"] > 1.5


def test_evaluate_scores_samplers_against_the_ceiling(small_run, monkeypatch, data, capsys):
    import aelab.evaluate as ev
    from aelab.run import Run

    monkeypatch.setattr(ev, "run_data", lambda run: data)
    mine = small_run.path / "samples" / "gmm.png"  # what aelab sample (or the user) put there
    mine.parent.mkdir(exist_ok=True)
    mine.write_bytes(b"mine")
    encoded = []  # sizes of the image sets encoded
    encode = Run.encode

    def counting_encode(self, x, *args, **kwargs):
        encoded.append(len(x))
        return encode(self, x, *args, **kwargs)

    monkeypatch.setattr(Run, "encode", counting_encode)
    result = ev.evaluate_run(small_run.path, n=1000, samplers=["normal", "gaussian", "gmm"], components=10)
    assert encoded.count(len(data.train_images)) == 1  # the training set, once for every row
    err = capsys.readouterr().err
    assert "aelab: [1/7] real training images" in err and "aelab: [6/7] sampler gmm" in err
    assert "aelab: fitting the gmm sampler on 12000 training codes" in err
    assert mine.read_bytes() == b"mine" and sorted(p.name for p in mine.parent.iterdir()) == ["gmm.png"]
    rows = result["samples"]
    # fidelity apart from coverage: decoded noise is less realistic than gmm samples, though its
    # spread-out samples' wide k-NN balls can reach more of the real digits (recall 0.21 vs 0.09)
    assert rows["sampler gmm"]["precision"] > rows["sampler normal"]["precision"]
    real = rows["real training images"]
    assert 0.7 < real["precision"] <= 1 and real["recall"] > 0.7
    assert rows["real training images"]["fid"] < rows["decoded training codes"]["fid"]
    assert rows["sampler gmm"]["fid"] < rows["sampler normal"]["fid"]
    assert rows["sampler gmm"]["confident_share"] > rows["sampler normal"]["confident_share"]
    assert rows["decoded training codes"]["confident_share"] > rows["sampler normal"]["confident_share"]
    # images the decoder never trained on land farther from the training set than its own
    # reconstructions of training images: the memorisation yardstick
    held_out = rows["decoded validation codes"]
    assert held_out["nn_train_distance_median"] > rows["decoded training codes"]["nn_train_distance_median"]
    assert held_out["n"] == 1000
    rec = result["reconstruction"]
    assert rec["pca-32"]["mse"] < 0.05 and 0 < rec["model"]["ssim"] < 1
    saved = json.loads((small_run.path / "evaluation.json").read_text())
    assert saved["samples"].keys() == rows.keys()
    assert (small_run.path / "evaluation" / "interpolation.png").stat().st_size > 1000
    assert (small_run.path / "evaluation" / "gmm.png").is_file()
    table = ev.format_table(result)
    assert f"{rows['sampler normal']['fid']:.2f}" in table
    assert "decoded validation codes: their FID is flattered" in table
    assert np.isfinite([r["fid"] for r in rows.values()]).all()
