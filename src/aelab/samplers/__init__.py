"""Samplers over latent codes: fit a density to a run's codes, then draw new codes to decode.

A plain autoencoder has no prior, so the tutorial's N(0, I) codes land far from where its
encoder puts codes; ex-post density estimation (Ghosh et al., ICLR 2020) fits a density to the
training codes instead::

    sampler = create_sampler("gmm", n_components=20).fit(codes)   # codes: (n, d)
    new_codes = sampler.sample(64, seed=1)                          # (64, d) float32
    sampler.save("gmm.safetensors"); load_sampler("gmm.safetensors")

    registry.py    SAMPLERS and create_sampler
    base.py        the fit/sample contract and the checks on codes
    normal.py      normal: N(0, I)
    prior.py       prior: a VAE's N(0, I)
    gaussian.py    one full-covariance Gaussian
    gmm.py         a Gaussian mixture (scikit-learn), on principal components
    neural.py      what flow, diffusion and two-stage share: a network on standardized codes
    flow.py        a normalizing flow (zuko's neural spline flow)
    diffusion.py   a denoising diffusion model (MLP denoiser, DDPM training, DDIM sampling)
    two_stage.py   a second VAE on a VAE's codes (Dai & Wipf 2019)
    fileformat.py  the fitted-sampler file: save and validated load
    fitting.py     samplers for a run: fit on its training codes once, save, reuse
"""

# each module registers its sampler; this order is the registry's (and the CLI's) order
from . import normal as _normal  # noqa: F401, I001
from . import gaussian as _gaussian  # noqa: F401
from . import gmm as _gmm  # noqa: F401
from . import prior as _prior  # noqa: F401
from . import flow as _flow  # noqa: F401
from . import diffusion as _diffusion  # noqa: F401
from . import two_stage as _two_stage  # noqa: F401
from .base import Sampler
from .diffusion import DiffusionSampler
from .fileformat import load_sampler, save_sampler
from .flow import FlowSampler
from .gaussian import GaussianSampler
from .gmm import GMMSampler, select_n_components
from .normal import NormalSampler
from .prior import PriorSampler
from .registry import RECOMMENDED, SAMPLERS, create_sampler
from .two_stage import TwoStageSampler

__all__ = ["RECOMMENDED", "SAMPLERS", "DiffusionSampler", "FlowSampler", "GaussianSampler", "GMMSampler",
           "NormalSampler", "PriorSampler", "Sampler", "TwoStageSampler", "create_sampler", "list_samplers",
           "load_sampler", "save_sampler", "select_n_components"]


def list_samplers():
    """The registered sampler names."""
    return SAMPLERS.names()
