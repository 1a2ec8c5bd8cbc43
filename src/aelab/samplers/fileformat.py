"""The fitted-sampler file: one safetensors file, arrays plus JSON metadata, never pickle.

    save_sampler(sampler, "RUN_DIR/samplers/gmm.safetensors")   # atomic
    sampler = load_sampler("RUN_DIR/samplers/gmm.safetensors")  # every array checked

Metadata: ``format`` (FORMAT), ``sampler`` (a registered name), ``params`` (the constructor
arguments as JSON). Arrays: ``data_min_``, ``data_max_`` and the sampler's learned state.
"""

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from aelab.errors import AelabError, RunError
from aelab.files import atomic_write_bytes

from .registry import SAMPLERS, create_sampler

__all__ = ["FORMAT", "save_sampler", "load_sampler", "check_shapes"]

FORMAT = "aelab-sampler-v1"


def save_sampler(sampler, path):
    """Write a fitted sampler to `path` atomically (arrays + JSON metadata, no pickle)."""
    if not hasattr(sampler, "n_features_in_"):
        raise AelabError(f"{type(sampler).__name__} is not fitted; call fit(codes) first")
    names = ("data_min_", "data_max_") + sampler._saved_state()
    arrays = {k: np.ascontiguousarray(getattr(sampler, k)) for k in names}
    params = json.dumps(sampler.get_config(), default=int)  # default=int: numpy integers
    meta = {"format": FORMAT, "sampler": sampler.name, "params": params}
    atomic_write_bytes(path, save(arrays, metadata=meta))


def load_sampler(path):
    """Load a sampler written by ``save``; a missing, corrupt or mismatched file is a RunError."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise RunError(f"cannot read sampler file {path}: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("sampler") not in SAMPLERS:
        raise RunError(f"{path} is not an aelab sampler file (metadata {meta!r})")
    try:
        sampler = create_sampler(meta["sampler"], **json.loads(meta["params"]))
    except (ValueError, KeyError, TypeError, AelabError) as exc:
        raise RunError(f"{path} has bad sampler parameters: {exc}") from exc
    layouts = [{"data_min_", "data_max_", *state} for state in sampler._state_layouts()]
    if set(arrays) not in layouts:
        raise RunError(f"{path} holds arrays {sorted(arrays)}, expected {sorted(layouts[0])}")
    sampler._set_state(arrays)
    check_shapes(sampler, path)
    sampler._finish_load()
    return sampler


def check_shapes(sampler, path):
    """Raise RunError when loaded arrays do not fit together."""
    d = sampler.n_features_in_
    shapes = {"data_max_": (d,), "mean_": (d,), "covariance_": (d, d)}
    if hasattr(sampler, "weights_"):
        k = len(sampler.weights_)
        shapes.update(means_=(k, d), covariances_=(k, d, d))
    if hasattr(sampler, "pca_components_"):  # gmm's compact form, from which covariances_ is built
        k, a, w = len(sampler.weights_), len(sampler.active_dims_), sampler.pca_components_
        p = w.shape[0] if w.ndim == 2 else -1
        shapes.update(pca_components_=(p, a), pca_covariances_=(k, p, p), active_std_=(a,))
    for k, shape in shapes.items():
        if hasattr(sampler, k) and getattr(sampler, k).shape != shape:
            raise RunError(f"{path}: {k} has shape {getattr(sampler, k).shape}, expected {shape}")
    a = getattr(sampler, "active_dims_", np.arange(0))
    if len(a) and (a.min() < 0 or a.max() >= d):
        raise RunError(f"{path}: active_dims_ out of range for latent_dim={d}")
