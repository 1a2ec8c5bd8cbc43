import pytest
import torch

from aelab.config import ModelConfig
from aelab.models import Autoencoder, DenseVAE, create_model, decoder, dense, encoder


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_tutorial_parameter_count():
    assert n_params(create_model(ModelConfig())) == 1_137_840


def test_dense_block_is_linear_batchnorm_relu():
    block = dense(784, 512)
    assert [type(m).__name__ for m in block] == ["Linear", "BatchNorm1d", "ReLU"]


def test_encoder_decoder_widths():
    enc, dec = encoder(784, 128), decoder(128, 784)
    assert [b[0].out_features for b in enc] == [512, 256, 128]
    assert [b[0].out_features for b in dec] == [256, 512, 784]


@pytest.mark.parametrize("act, expect", [("relu", "ReLU"), ("none", "Identity"), ("sigmoid", "Sigmoid")])
def test_output_activation(act, expect):
    model = Autoencoder(output_activation=act)
    assert type(model.decoder[-1][-1]).__name__ == expect


def test_shapes_and_code_is_nonnegative():
    model = Autoencoder(latent_dim=16).eval()
    x = torch.rand(8, 28, 28)
    z = model.encode(x)
    assert z.shape == (8, 16) and (z >= 0).all()
    assert model.decode(z).shape == (8, 784)
    assert model(x).shape == (8, 784)


def test_vae_interface_and_loss_parts():
    torch.manual_seed(0)
    model = DenseVAE(latent_dim=8)
    x = torch.rand(16, 784)
    loss, parts = model.loss(x)
    assert model.encode(x).shape == (16, 8)
    assert torch.isclose(loss, parts["recon"] + parts["kl"])
    assert parts["kl"] >= 0
    out = model.decode(torch.randn(4, 8))
    assert out.shape == (4, 784) and out.min() >= 0 and out.max() <= 1
