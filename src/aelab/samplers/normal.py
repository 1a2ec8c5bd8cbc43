"""N(0, I) codes: the tutorial's `normal` sampler."""

from .base import Sampler
from .registry import SAMPLERS

__all__ = ["NormalSampler"]


class NormalSampler(Sampler):
    """N(0, I) codes of the fitted codes' dimension: the tutorial's sampler.

    It ignores everything about the codes except their dimension, which is why it gives no
    digits for a ReLU autoencoder.
    """

    name = "normal"

    def _fit(self, codes):
        pass

    def _draw(self, n, rng):
        return rng.standard_normal((n, self.n_features_in_))


SAMPLERS.add("normal", NormalSampler, "N(0, I), the tutorial's: ignores where the codes are")
