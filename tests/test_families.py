"""Every registered model family, as an AE and as a VAE: shapes, size, one real training step;
the `aelab models` listing; the RAE's code penalty and decoder weight decay."""

import pytest
import torch

from aelab.cli import main
from aelab.config import ModelConfig
from aelab.engine import to_float_batch
from aelab.models import MODELS, create_model, parameter_count
from aelab.optim import make_optimizer
from aelab.presets import resolve_config

# parameters at latent 16 with the default widths (dense families: 4h, 2h = 64, 32)
PARAMS = {("dense", "ae"): 108_448, ("dense", "vae"): 107_376,
          ("dense-linear", "ae"): 106_848, ("dense-linear", "vae"): 107_376,
          ("conv", "ae"): 420_177, ("conv", "vae"): 520_545}


def test_every_registered_model_is_measured_here():
    assert {name for name, _ in PARAMS} == set(MODELS.names())


@pytest.mark.parametrize("name, kind", sorted(PARAMS))
def test_shapes_size_and_one_training_step(name, kind, small_mnist):
    torch.manual_seed(0)
    cfg = resolve_config("compare", {"architecture": name, "kind": kind, "latent_dim": 16})
    model = create_model(cfg.model)
    assert parameter_count(model) == PARAMS[name, kind]
    x = to_float_batch(small_mnist.train_images[:64])           # (64, 784) real digits
    z = model.encode(small_mnist.train_images[:64].float() / 255)  # (64, 28, 28) works too
    assert z.shape == (64, 16) and model.decode(z).shape == (64, 784) and model(x).shape == (64, 784)
    if name != "dense":  # linear codes take both signs; the tutorial's pass a ReLU
        assert (z < 0).any()
    loss, parts = model.loss(x)
    assert set(parts) == set(model.loss_parts) and "mse" in parts
    if kind == "vae":
        assert torch.isclose(loss, parts["recon"] + cfg.model.beta * parts["kl"])
    opt = make_optimizer(model, 1e-3, torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    model.eval()
    out = model(x)
    if cfg.model.output_activation == "sigmoid":
        assert out.min() >= 0 and out.max() <= 1


def test_output_activation_defaults_to_the_architectures_own():
    assert resolve_config("seed").model.output_activation == "relu"
    assert resolve_config("seed", {"kind": "vae"}).model.output_activation == "sigmoid"
    assert resolve_config("seed", {"architecture": "conv"}).model.output_activation == "sigmoid"
    assert resolve_config("seed-1st-try", {"architecture": "conv"}).model.output_activation == "none"


def test_code_penalty_is_a_logged_part_and_decoder_decay_a_second_group():
    torch.manual_seed(0)
    cfg = resolve_config("rae")
    model = create_model(cfg.model)
    x = torch.rand(32, 784)
    loss, parts = model.loss(x)
    assert model.loss_parts == ("mse", "code_l2")
    z = model.encode(x)
    assert torch.isclose(parts["code_l2"], 0.5 * (z ** 2).sum(1).mean())
    assert torch.isclose(loss, parts["mse"] + cfg.model.code_penalty * parts["code_l2"])
    opt = make_optimizer(model, 1e-3, torch.device("cpu"), cfg.train.decoder_weight_decay)
    groups = [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups]
    assert groups == [(len(list(model.parameters())) - len(list(model.decoder.parameters())), 0),
                      (len(list(model.decoder.parameters())), cfg.train.decoder_weight_decay)]


def test_models_command_lists_every_model_with_its_size(capsys):
    assert main(["models", "--latent-dim", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "AE", "params"] and "(latent 16)" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert list(rows) == MODELS.names()
    for name in MODELS.names():
        assert rows[name][1:3] == [f"{PARAMS[name, 'ae']:,}", f"{PARAMS[name, 'vae']:,}"]
        assert MODELS.help(name).split()[0] in rows[name]


def test_conv_refuses_a_width_and_unknown_models_are_one_line():
    from aelab.errors import AelabError

    with pytest.raises(AelabError, match="width_dim=64 applies to the dense families"):
        create_model(ModelConfig(architecture="conv", width_dim=64))
    with pytest.raises(AelabError, match="unknown model 'convv'"):
        create_model(ModelConfig(architecture="convv"))
