"""aelab.matmul: each backend computes the dense layer's three products in fp32, in the layouts the
hand-written step needs; a backend this build cannot run is never chosen and, asked for, is one
line."""

from __future__ import annotations

import pytest
import torch

from aelab import threads
from aelab.cli import main
from aelab.engine import to_float_batch
from aelab.errors import AelabError
from aelab.matmul import MATMULS, available, available_backends
from helpers_reliability import write_small_idx_dir

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(not available(name), reason=f"no {name} here"))
            for name in MATMULS.names()]


@pytest.mark.parametrize("matmul", BACKENDS)
@pytest.mark.parametrize("n, i, o", [(128, 784, 512), (37, 256, 128), (2, 128, 784)])
def test_products_match_float64_in_the_layouts_the_step_needs(mnist, matmul, n, i, o):
    gen = torch.Generator().manual_seed(0)
    a = to_float_batch(mnist.train_images[:n])[:, :i].contiguous()  # real pixels, mostly zeros
    weight = torch.randn(o, i, generator=gen) / i ** 0.5
    bias = torch.randn(o, generator=gen)
    dz = torch.randn(n, o, generator=gen) * 1e-4
    products = MATMULS.get(matmul)
    got = {"linear": products.linear(a, weight, bias, out=torch.empty(n, o)),
           "grad_input": products.grad_input(dz, weight, out=torch.empty(n, i)),
           "grad_weight": products.grad_weight(dz, a, out=torch.empty(o, i))}
    a64, w64, dz64 = a.double(), weight.double(), dz.double()
    want = {"linear": a64 @ w64.t() + bias.double(), "grad_input": dz64 @ w64, "grad_weight": dz64.t() @ a64}
    for name, value in got.items():
        assert value.dtype == torch.float32 and value.is_contiguous(), name
        assert value.shape == want[name].shape, name
        scale = want[name].abs().max()
        assert (value.double() - want[name]).abs().max() <= 1e-5 * scale, name  # fp32, not bf16 (1e-2)


def test_torch_writes_into_out():
    a, weight, bias = torch.rand(4, 3), torch.rand(5, 3), torch.rand(5)
    out = torch.empty(4, 5)
    assert MATMULS.get("torch").linear(a, weight, bias, out=out) is out


def test_unknown_backend_is_one_line():
    with pytest.raises(AelabError, match="unknown matmul backend 'mkl'; choose from torch, onednn"):
        MATMULS.get("mkl")


def test_a_build_without_onednn_never_chooses_it_and_refuses_it_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert not available("onednn") and available_backends() == ["torch"]
    monkeypatch.delenv("AELAB_MATMUL")
    assert threads.matmul_limit() == ["torch"]
    data = write_small_idx_dir(tmp_path / "data", n_train=600, n_test=200)
    argv = ["train", "--data-dir", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--device", "cpu", "--quiet", "--matmul", "onednn"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--matmul onednn: this torch build has no working onednn" in err
    assert main(argv[:-1] + ["auto"]) == 0
    saved = (tmp_path / "run" / "config.json").read_text()
    assert '"matmul_chosen": "torch"' in saved
