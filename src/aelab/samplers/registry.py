"""The sampler registry: name -> sampler class, and `create_sampler` by name."""

import inspect

from aelab.errors import AelabError
from aelab.registry import Registry

__all__ = ["SAMPLERS", "RECOMMENDED", "create_sampler"]

SAMPLERS = Registry("sampler")
RECOMMENDED = "gmm"  # the fitted sampler `aelab sample` and the explorer recommend (README, "Real digits")


def create_sampler(name, **kwargs):
    """Build an unfitted sampler by name, e.g. ``create_sampler("gmm", n_components=10)``."""
    cls = SAMPLERS.get(name)
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        raise AelabError(f"sampler {name!r} takes no argument {bad[0]!r}; it takes {allowed}")
    return cls(**kwargs)
