"""benchmarks/fused_norm.py's C kernels give aelab's step's loss, gradients and statistics (its claim)."""

import copy
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from aelab.dense_step import DenseStep
from aelab.engine import to_float_batch
from aelab.models import Autoencoder

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fused_norm.py"
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")


@pytest.fixture(scope="module")
def fused():
    spec = importlib.util.spec_from_file_location("fused_norm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.compile_kernels()


@pytest.mark.parametrize("output, width, n", [("relu", None, 128), ("none", None, 96), ("relu", 37, 5)])
def test_fused_step_matches_the_aten_step(fused, mnist, output, width, n):
    module, lib = fused
    torch.manual_seed(0)
    model = Autoencoder(latent_dim=20 if width else 128, output_activation=output, width_dim=width)
    twin = copy.deepcopy(model)
    for p in twin.parameters():
        p.grad = torch.zeros_like(p)
    x = to_float_batch(mnist.train_images[:n])
    loss, _ = DenseStep(model)(x)
    fused_loss, _ = module.FusedStep(twin, "torch", lib, fuse_loss=True)(x)
    assert fused_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        if name.endswith("0.bias"):  # a Linear bias before BatchNorm: rounding noise around 0
            assert (p.grad - q.grad).abs().max() < 1e-6, name
        else:
            assert (p.grad - q.grad).abs().max() <= 1e-4 * p.grad.abs().max(), name
    for (name, a), b in zip(model.named_buffers(), twin.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name


def test_fused_batch_is_the_engines_batch(fused, mnist):
    _, lib = fused
    images = mnist.train_images.contiguous()
    idx = torch.tensor([5, 0, 11_999, 5])
    out = torch.empty(4, 784)
    lib.gather_u8(images.data_ptr(), idx.data_ptr(), 4, 784, out.data_ptr())
    assert torch.equal(out, to_float_batch(images.index_select(0, idx)))


def test_masked_nan_gradient_is_dropped_like_threshold_backward(fused):
    """A NaN behind a closed ReLU becomes 0, as in torch; an open one reaches every sum."""
    module, lib = fused
    torch.manual_seed(0)
    model = Autoencoder()
    step = module.FusedStep(model, "torch", lib, fuse_loss=False)
    x = torch.rand(16, 784)
    x, bufs, _ = step.prepare(x)
    step(x)
    b = bufs[0]
    grad = torch.randn_like(b["y"])
    closed, opened = (b["y"] == 0).nonzero()[0], (b["y"] > 0).nonzero()[0]
    grad[tuple(closed)] = float("nan")
    assert torch.isfinite(step.normalize_backward(0, b, grad)).all()
    grad[tuple(opened)] = float("nan")
    assert torch.isnan(step.normalize_backward(0, b, grad)[:, opened[1]]).all()
