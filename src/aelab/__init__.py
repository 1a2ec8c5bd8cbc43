"""aelab: learn and research autoencoders on MNIST-like images.

    import aelab
    run = aelab.train(aelab.resolve_config("seed", {"epochs": 2}), "runs/demo")
    images = run.sample(16, sampler="gmm")

Importing aelab changes nothing outside it: no environment variable, no torch thread setting.
The public names load their modules (and torch) on first use, so `aelab.cli` can choose its own
process's OpenMP policy before torch loads (see `aelab.cli.main`).
"""

from importlib import import_module
from typing import Any

from .version import __version__

_PUBLIC = {  # name -> module that defines it
    "Config": "aelab.config", "Run": "aelab.run", "load_run": "aelab.run", "create_model": "aelab.models",
    "get_preset": "aelab.presets", "list_presets": "aelab.presets", "resolve_config": "aelab.presets",
    "train": "aelab.training",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'aelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
