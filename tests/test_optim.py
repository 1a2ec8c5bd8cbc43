"""Adam layer by layer (aelab.optim.LayerAdam inside DenseStep.train_step) gives what the step after
the backward pass gives, bit for bit, on real MNIST batches; a non-finite value stops it before
the update it would spoil."""

import copy

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from aelab.checks import all_finite
from aelab.dense_step import DenseStep
from aelab.engine import to_float_batch
from aelab.matmul import available
from aelab.models import Autoencoder
from aelab.optim import LayerAdam, make_optimizer, supports_layer_adam

MATMUL = "onednn" if available("onednn") else "torch"


def _pair(decoder_weight_decay=0.0):
    torch.manual_seed(0)
    model = Autoencoder()
    twin = copy.deepcopy(model)
    return [(m, make_optimizer(m, 1e-3, torch.device("cpu"), decoder_weight_decay)) for m in (model, twin)]


def _state(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: {n: t.clone() for n, t in s.items()} for k, s in optimizer.state_dict()["state"].items()})


def _assert_same(a, b):
    (weights_a, adam_a), (weights_b, adam_b) = a, b
    assert weights_a.keys() == weights_b.keys()
    for k in weights_a:
        assert torch.equal(weights_a[k], weights_b[k]), k
    assert adam_a.keys() == adam_b.keys()
    for k in adam_a:
        assert adam_a[k].keys() == adam_b[k].keys() == {"step", "exp_avg", "exp_avg_sq"}
        for n in adam_a[k]:
            mine, theirs = adam_a[k][n], adam_b[k][n]
            assert mine.dtype == theirs.dtype and torch.equal(mine, theirs), (k, n)


@pytest.mark.parametrize("decoder_weight_decay", [0.0, 1e-3])
def test_layer_by_layer_equals_the_step_after_backward_bit_for_bit(mnist, decoder_weight_decay):
    (model, opt), (twin, twin_opt) = _pair(decoder_weight_decay)
    whole, layered = DenseStep(model, MATMUL), DenseStep(twin, MATMUL)
    update = LayerAdam(twin_opt)
    for step in range(12):
        lr = 1e-3 * (1 + step % 3)  # a schedule changes the rate between steps
        for o in (opt, twin_opt):
            for g in o.param_groups:
                g["lr"] = lr
        x = to_float_batch(mnist.train_images[step * 100:(step + 1) * 100])
        loss, _ = whole(x)
        assert all_finite([p.grad for p in model.parameters()])
        opt.step()
        loss_twin, parts, found = layered.train_step(x, update)
        assert found is None and torch.equal(loss, loss_twin) and torch.equal(parts["mse"], loss_twin)
    assert not torch.equal(model.encoder[0][0].weight, Autoencoder().encoder[0][0].weight)
    _assert_same(_state(model, opt), _state(twin, twin_opt))
    # and a fresh optimizer loads the layered one's state as Adam's own
    fresh = make_optimizer(copy.deepcopy(twin), 1e-3, torch.device("cpu"), decoder_weight_decay)
    fresh.load_state_dict(twin_opt.state_dict())
    opt.step(), fresh.step()


def test_a_non_finite_loss_stops_before_any_update(mnist):
    (model, opt), _ = _pair()
    step, update = DenseStep(model, MATMUL), LayerAdam(opt)
    x = to_float_batch(mnist.train_images[:64])
    step.train_step(x, update)
    before = _state(model, opt)
    x[0, 0] = float("nan")
    _, _, found = step.train_step(x, update)
    assert found == "loss became nan"
    after = _state(model, opt)
    for name, _ in model.named_parameters():  # (the running statistics saw the NaN, as in autograd)
        assert torch.equal(before[0][name], after[0][name]), name
    _assert_same(({}, before[1]), ({}, after[1]))

def test_a_non_finite_gradient_stops_before_that_layer_and_those_below(mnist, monkeypatch):
    (model, opt), _ = _pair()
    step, update = DenseStep(model, MATMUL), LayerAdam(opt)
    x = to_float_batch(mnist.train_images[:64])
    step.train_step(x, update)
    before = {name: p.clone() for name, p in model.named_parameters()}
    bad = step.layers[2][0]  # the third Linear of six: layers 3-5 come first in the backward pass
    real = DenseStep.weight_grads

    def weight_grads(self, lin, dz, inputs):
        real(self, lin, dz, inputs)
        if lin is bad:
            lin.weight.grad[0, 0] = float("inf")
    monkeypatch.setattr(DenseStep, "weight_grads", weight_grads)
    _, _, found = step.train_step(x, update)
    assert found == "a gradient became non-finite"
    blocks = [*model.encoder, *model.decoder]
    for k, block in enumerate(blocks):
        for p in block.parameters():
            name = next(n for n, q in model.named_parameters() if q is p)
            assert torch.equal(before[name], p) == (k <= 2), (k, name)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_supports_only_plain_fused_adam():
    model = Autoencoder()
    params = list(model.parameters())
    assert supports_layer_adam(torch.optim.Adam(params, lr=1e-3, fused=True))
    assert not supports_layer_adam(torch.optim.Adam(params, lr=1e-3, foreach=True))
    assert not supports_layer_adam(torch.optim.Adam(params, lr=1e-3, fused=True, amsgrad=True))
    assert not supports_layer_adam(torch.optim.AdamW(params, lr=1e-3, fused=True))
    assert not supports_layer_adam(torch.optim.SGD(params, lr=1e-3))
    hooked = torch.optim.Adam(params, lr=1e-3, fused=True)
    hooked.register_step_pre_hook(lambda *a: None)
    assert not supports_layer_adam(hooked)
    handle = register_optimizer_step_pre_hook(lambda *a: None)  # a hook on every optimizer
    try:
        assert not supports_layer_adam(torch.optim.Adam(params, lr=1e-3, fused=True))
    finally:
        handle.remove()
    assert supports_layer_adam(torch.optim.Adam(params, lr=1e-3, fused=True))
    with pytest.raises(ValueError, match="fused=True"):
        LayerAdam(torch.optim.Adam(params, lr=1e-3, foreach=True))
