"""The hand-written dense step computes what autograd computes, on real MNIST batches, with each
matmul backend (aelab.matmul)."""

import copy

import pytest
import torch

from aelab.config import ModelConfig
from aelab.dense_step import DenseStep, supports
from aelab.engine import evaluate_loss, to_float_batch
from aelab.matmul import MATMULS, available
from aelab.models import Autoencoder, create_model
from aelab.optim import make_optimizer
from aelab.presets import resolve_config
from aelab.training import train

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(not available(name), reason=f"no {name} here"))
            for name in MATMULS.names()]


def _batch(mnist, n, start=0):
    return to_float_batch(mnist.train_images[start:start + n])


@pytest.mark.parametrize("output_activation", ["relu", "none"])
@pytest.mark.parametrize("n", [128, 37])
@pytest.mark.parametrize("matmul", BACKENDS)
def test_loss_gradients_and_running_stats_match_autograd(mnist, output_activation, n, matmul):
    torch.manual_seed(0)
    reference = Autoencoder(output_activation=output_activation)
    model = copy.deepcopy(reference)
    x = _batch(mnist, n)

    loss, parts = reference.loss(x)
    loss.backward()
    hand_loss, hand_parts = DenseStep(model, matmul)(x)

    assert hand_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert hand_parts["mse"].item() == pytest.approx(parts["mse"].item(), rel=1e-5)
    params = dict(reference.named_parameters())
    for (name, p), q in zip(params.items(), model.parameters()):
        assert q.grad.is_contiguous() and q.grad.shape == q.shape
        if name.endswith(".0.bias"):  # a Linear's bias before BatchNorm: 0 up to rounding, in both
            weight_scale = params[name.replace(".bias", ".weight")].grad.abs().max()
            assert max(p.grad.abs().max(), q.grad.abs().max()) <= 1e-5 * weight_scale, name
            continue
        scale = p.grad.abs().max()
        assert scale > 0, name
        assert (p.grad - q.grad).abs().max() <= 1e-5 * scale, name
    for (name, a), b in zip(reference.named_buffers(), model.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("matmul", BACKENDS)
def test_fifty_adam_steps_follow_the_autograd_path(mnist, matmul):
    torch.manual_seed(0)
    reference = Autoencoder()
    model = copy.deepcopy(reference)
    opt_ref = make_optimizer(reference, 1e-3, torch.device("cpu"))
    opt = make_optimizer(model, 1e-3, torch.device("cpu"))
    step = DenseStep(model, matmul)
    losses_ref, losses = [], []
    for i in range(50):
        x = _batch(mnist, 128, 128 * i)
        loss, _ = reference.loss(x)
        opt_ref.zero_grad(set_to_none=True)
        loss.backward()
        opt_ref.step()
        losses_ref.append(loss.item())
        losses.append(step(x)[0].item())
        opt.step()
    assert losses[-1] < 0.5 * losses[0]  # it learns
    # torch's products are autograd's own kernels; oneDNN's round differently, and Adam amplifies
    # that as it does a change of thread count (torch on 1 vs 2 threads: 1.1% apart here, oneDNN 2.2%)
    # (the Linear biases before BatchNorm, whose gradients are rounding alone, drift apart most)
    rel = 1e-3 if matmul == "torch" else 3e-2
    assert losses == pytest.approx(losses_ref, rel=rel)
    with torch.no_grad():
        x = to_float_batch(mnist.test_images[:500])
        reference.eval(), model.eval()
        if matmul == "torch":
            assert torch.allclose(model(x), reference(x), atol=1e-3)
        test_mse = [torch.mean((m(x) - x) ** 2).item() for m in (model, reference)]
        assert test_mse[0] == pytest.approx(test_mse[1], rel=rel)


def test_only_the_plain_dense_autoencoder_is_supported():
    assert supports(create_model(ModelConfig()))
    assert not supports(create_model(ModelConfig(kind="vae", output_activation="sigmoid")))
    assert not supports(Autoencoder(output_activation="sigmoid"))

    hooked = Autoencoder()
    hooked.encoder[0][2].register_forward_hook(lambda module, args, out: None)
    assert not supports(hooked)  # the hook would never fire in the hand-written step
    grad_hooked = Autoencoder()
    grad_hooked.decoder[0][0].weight.register_hook(lambda grad: grad)
    assert not supports(grad_hooked)

    class Custom(Autoencoder):
        pass

    assert not supports(Custom())
    with pytest.raises(ValueError):
        DenseStep(Custom())


@pytest.mark.parametrize("matmul", BACKENDS)
def test_training_with_the_hand_written_step_matches_autograd(tmp_path, small_mnist, monkeypatch, matmul):
    cfg = resolve_config("seed", {"epochs": 2, "seed": 3, "device": "cpu", "matmul": matmul})
    hand = train(cfg, tmp_path / "hand", data=small_mnist, quiet=True, log=lambda line: None)
    monkeypatch.setattr("aelab.dense_step.supports", lambda model: False)
    cfg.train.matmul = "torch"  # autograd's products
    auto = train(cfg, tmp_path / "auto", data=small_mnist, quiet=True, log=lambda line: None)
    assert hand.config.train.matmul_chosen == matmul
    for a, b in zip(hand.metrics, auto.metrics):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
        assert a["valid_mse"] == pytest.approx(b["valid_mse"], rel=1e-2)


@pytest.mark.parametrize("output_activation", ["relu", "none"])
@pytest.mark.parametrize("matmul", BACKENDS)
def test_the_validation_pass_matches_the_model_in_eval_mode(mnist, output_activation, matmul):
    torch.manual_seed(0)
    model = Autoencoder(output_activation=output_activation)
    step = DenseStep(model, matmul)
    for start in range(0, 1280, 128):  # running statistics away from their initial 0 and 1
        step(_batch(mnist, 128, start))
    model.eval()
    x = to_float_batch(mnist.test_images[:1000])
    expected, _ = model.loss(x)
    loss, parts = step.evaluate(x)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["mse"].item() == loss.item()
    assert evaluate_loss(model, mnist.test_images[:1000], loss_fn=step.evaluate) == pytest.approx(
        evaluate_loss(model, mnist.test_images[:1000]), rel=1e-5)
