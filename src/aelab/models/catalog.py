"""The model catalogue `aelab models` prints: each architecture's size at a latent size, and its help.

    rows = describe_models(latent_dim=2)   # [{"name": "dense", "ae_params": 15054, ...}, ...]
"""

from __future__ import annotations

from ..config import ModelConfig
from . import KINDS, MODELS, create_model, parameter_count

__all__ = ["describe_models"]


def describe_models(latent_dim: int = 128, width_dim: int | None = None) -> list[dict]:
    """Each registered architecture: its name, AE and VAE parameter counts at this size, its help.

    `width_dim` applies to the families that take one (not conv, whose channels are fixed).
    """
    rows = []
    for name, help in MODELS.helps().items():
        width = width_dim if name != "conv" else None
        counts = {kind: parameter_count(create_model(ModelConfig(architecture=name, kind=kind,
                                                                 latent_dim=latent_dim, width_dim=width)))
                  for kind in KINDS}
        rows.append({"name": name, "ae_params": counts["ae"], "vae_params": counts["vae"], "help": help})
    return rows
