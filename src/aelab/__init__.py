"""aelab: learn and research autoencoders on MNIST-like images.

    import aelab
    run = aelab.train(aelab.resolve_config("seed", {"epochs": 2}), "runs/demo")
    images = run.sample(16, sampler="gmm")
"""

__version__ = "0.1.0"

from .config import Config, get_preset, list_presets, resolve_config  # noqa: E402
from .models import create_model  # noqa: E402
from .run import Run, load_run  # noqa: E402


def train(config: Config, out=None, **kwargs) -> Run:
    """Train `config` into run folder `out`; see `aelab.training.train`."""
    from .training import train as _train

    return _train(config, out, **kwargs)


__all__ = ["Config", "Run", "create_model", "get_preset", "list_presets", "load_run",
           "resolve_config", "train", "__version__"]
