"""A VAE's N(0, I) prior: the `prior` sampler (the maths of `normal`, the meaning of a VAE)."""

from .normal import NormalSampler
from .registry import SAMPLERS

__all__ = ["PriorSampler"]


class PriorSampler(NormalSampler):
    """The N(0, I) prior of a VAE. Same maths as ``normal``, but only meaningful for a VAE."""

    name = "prior"


SAMPLERS.add("prior", PriorSampler, "N(0, I) from a VAE's prior (VAE runs only)")
