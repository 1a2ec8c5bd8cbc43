"""aelab: learn and research autoencoders on MNIST-like images.

    import aelab
    run = aelab.train(aelab.resolve_config("seed", {"epochs": 2}), "runs/demo")
    images = run.sample(16, sampler="gmm")
"""

import os as _os

# OpenMP threads that spin while waiting turn a busy machine into a 30x slowdown (measured on a
# shared 2-core box: 900-1800 ms per training step with spinning, 9-40 ms passive). It must be
# set before torch loads its OpenMP runtime; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from .config import Config, get_preset, list_presets, resolve_config  # noqa: E402
from .models import create_model  # noqa: E402
from .run import Run, load_run  # noqa: E402


def train(config: Config, out: str | Path | None = None, **kwargs: Any) -> Run:
    """Train `config` into run folder `out`; see `aelab.training.train`."""
    from .training import train as _train

    return _train(config, out, **kwargs)


__all__ = ["Config", "Run", "create_model", "get_preset", "list_presets", "load_run",
           "resolve_config", "train", "__version__"]
