"""The model registries: architectures (`MODELS`) and what is trained on them (`KINDS`).

Each architecture file registers its builder at its bottom, `fn(cfg: ModelConfig) -> nn.Module`,
with `register_model`, which also records the architecture's own output activation per kind
(used when `ModelConfig.output_activation` is None); `aelab.models` imports every such file, so
the registry is full once that package is loaded.

    @register_model("conv", "strided convolutions ...", ae="sigmoid", vae="sigmoid")
    def conv_model(cfg): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry

__all__ = ["MODELS", "KINDS", "register_model"]

MODELS: Registry[Callable[[Any], Any]] = Registry("model")
KINDS: Registry[str] = Registry("model kind")
KINDS.add("ae", "ae", "a deterministic autoencoder: image -> code -> image")
KINDS.add("vae", "vae", "a variational autoencoder: a Gaussian encoder and an N(0, I) prior")


def register_model(name: str, help: str, *, ae: str = "sigmoid", vae: str = "sigmoid",
                   warning: Callable[[Any], str | None] | None = None) -> Callable[[Callable], Callable]:
    """Register a builder under `name`; `ae` / `vae`: its output activation for each kind;
    `warning(cfg)`: a one-line caution about a config of this architecture, or None."""
    def add(fn: Callable) -> Callable:
        fn.output_activation = {"ae": ae, "vae": vae}
        fn.warning = warning or (lambda cfg: None)
        return MODELS.add(name, fn, help)
    return add
