"""The three matrix products of a dense layer's training step, by backend (`--matmul`).

    products = MATMULS.get("onednn")
    z = products.linear(a, weight, bias, out=z)      # a @ weight.T + bias
    da = products.grad_input(dz, weight, out=da)     # dz @ weight
    dw = products.grad_weight(dz, a, out=dw)         # dz.T @ a, in the weight's own layout

Each returns its result: `torch` writes it into `out`, `onednn` returns a new tensor (its op has
no out= form). Both compute in fp32 with fp32 accumulation; they differ only in rounding.

- `torch`: `torch.addmm` and `torch.mm`, the BLAS torch was built with (MKL in the x86 wheels).
- `onednn`: `torch.ops.mkldnn._linear_pointwise`, the inner product of the oneDNN library torch
  bundles (the op torch.compile's CPU backend calls for Linear layers).

Why two: MKL picks its kernels by CPU vendor. On the AMD EPYC with AVX-512 this project's CI
runs on, MKL's fp32 products at the seed model's shapes ran at 92-100 GFLOP/s on one core and
oneDNN's at 127-214, the step's 17 products 7.80 against 3.91 ms (`python
benchmarks/matmul_backends.py`); on Intel CPUs MKL is the one tuned for the chip. Neither is
right everywhere, so `--matmul auto` times both on the run's own step (`aelab.threads`) and the
run records which it used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .registry import Registry

__all__ = ["Products", "MATMULS", "AUTO", "available", "available_backends"]

AUTO = "auto"
Product = Callable[..., torch.Tensor]


class Products(NamedTuple):
    linear: Product       # (a, weight, bias, out) -> a @ weight.T + bias
    grad_input: Product   # (dz, weight, out) -> dz @ weight
    grad_weight: Product  # (dz, a, out) -> dz.T @ a


def _torch_linear(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.addmm(bias, a, weight.t(), out=out)


def _torch_grad_input(dz: torch.Tensor, weight: torch.Tensor,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.mm(dz, weight, out=out)


def _torch_grad_weight(dz: torch.Tensor, a: torch.Tensor,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    return torch.mm(dz.t(), a, out=out)


def _inner_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias through oneDNN; weight is (out_features, in_features), any strides."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _onednn_linear(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    return _inner_product(a, weight, bias)


def _onednn_grad_input(dz: torch.Tensor, weight: torch.Tensor,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    return _inner_product(dz, weight.t(), None)


def _onednn_grad_weight(dz: torch.Tensor, a: torch.Tensor,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    return _inner_product(dz.t(), a.t(), None)


MATMULS: Registry[Products] = Registry("matmul backend")
MATMULS.add("torch", Products(_torch_linear, _torch_grad_input, _torch_grad_weight),
            "torch.addmm / torch.mm: the BLAS torch was built with (MKL in the x86 wheels)")
MATMULS.add("onednn", Products(_onednn_linear, _onednn_grad_input, _onednn_grad_weight),
            "oneDNN's inner product (torch.ops.mkldnn._linear_pointwise), bundled with torch")


def available(name: str) -> bool:
    """Whether backend `name` runs in this torch build (oneDNN: built with it, and the op answers)."""
    MATMULS.get(name)
    if name == "torch":
        return True
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    try:
        x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
        return bool(torch.equal(_inner_product(x, w, b), torch.full((2, 4), 3.0)))
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def available_backends() -> list[str]:
    """The backends this build runs, in registration order (torch first)."""
    return [name for name in MATMULS.names() if available(name)]
