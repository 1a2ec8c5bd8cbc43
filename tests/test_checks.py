"""checks.all_finite, the per-step gradient check: it finds one NaN or inf among many tensors, leaves
every value as it was, and gives the same answer where torch lacks its one-pass kernel."""

from __future__ import annotations

import pytest
import torch

from aelab.checks import all_finite
from aelab.models import Autoencoder


def _grads() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(p.shape, generator=gen) * 1e-3 for p in Autoencoder().parameters()]
    grads[3][0] = -0.0
    return grads


@pytest.mark.parametrize("one_pass", [True, False])
def test_all_finite_finds_any_nan_or_inf_and_changes_nothing(monkeypatch, one_pass):
    if not one_pass:  # a torch build without the mixed-precision kernel: the norms decide
        def missing(*args):
            raise NotImplementedError("no such kernel here")
        monkeypatch.setattr(torch, "_amp_foreach_non_finite_check_and_unscale_", missing)
    grads = _grads()
    before = [g.clone() for g in grads]
    assert all_finite(grads) and all_finite([])
    for g, b in zip(grads, before):
        assert torch.equal(g, b) and torch.equal(torch.signbit(g), torch.signbit(b))
    for bad in (float("nan"), float("inf"), float("-inf")):
        for k in (0, 13, len(grads) - 1):  # the first, a middle and the last tensor
            grads = _grads()
            grads[k].view(-1)[-1] = bad
            assert not all_finite(grads), (bad, k)
