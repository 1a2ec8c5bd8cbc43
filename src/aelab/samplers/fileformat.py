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
from aelab.files import atomic_write_bytes, check_regular_file

from .registry import SAMPLERS, create_sampler

__all__ = ["FORMAT", "save_sampler", "load_sampler", "saved_params", "check_shapes"]

FORMAT = "aelab-sampler-v1"
MAX_FILE_BYTES = 512 << 20
MAX_DIMS = 1024               # the largest code aelab trains
MAX_COMPONENTS = 10_000       # the most --components allows
MAX_EXPANDED_BYTES = 1 << 30  # what a file may make aelab allocate once loaded (gmm's covariances)


def save_sampler(sampler, path, fitted_on=None):
    """Write a fitted sampler to `path` atomically (arrays + JSON metadata, no pickle);
    `fitted_on`, the digest of the weights whose codes it was fitted to (`Run.weights_digest`)."""
    if not hasattr(sampler, "n_features_in_"):
        raise AelabError(f"{type(sampler).__name__} is not fitted; call fit(codes) first")
    names = ("data_min_", "data_max_") + sampler._saved_state()
    arrays = {k: np.ascontiguousarray(getattr(sampler, k)) for k in names}
    params = json.dumps(sampler.get_config(), default=int)  # default=int: numpy integers
    meta = {"format": FORMAT, "sampler": sampler.name, "params": params}
    if fitted_on is not None:
        meta["fitted_on"] = fitted_on
    atomic_write_bytes(path, save(arrays, metadata=meta))


def _read_metadata(path):
    """The file's metadata after the checks every read makes first: a regular file, bounded size."""
    check_regular_file(path, path.parent, MAX_FILE_BYTES, f"no sampler file at {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise RunError(f"cannot read sampler file {path}: {exc}") from exc


def saved_fitted_on(path):
    """The weights digest a sampler file says it was fitted on (None: not recorded), header only."""
    value = _read_metadata(Path(path)).get("fitted_on")
    return value if isinstance(value, str) else None


def saved_params(path):
    """(sampler name, constructor arguments) a sampler file says it holds, from its header alone;
    RunError on a file that is not one. `load_sampler` still checks every array before use."""
    path = Path(path)
    meta = _read_metadata(path)
    if meta.get("format") != FORMAT or meta.get("sampler") not in SAMPLERS:
        raise RunError(f"{path} is not an aelab sampler file (metadata {meta!r})")
    try:
        params = json.loads(meta["params"])
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise RunError(f"{path} has bad sampler parameters: {exc}") from exc
    if not isinstance(params, dict):
        raise RunError(f"{path} has bad sampler parameters: {params!r}")
    return meta["sampler"], params


def load_sampler(path, latent_dim=None):
    """Load a sampler written by ``save``; any defect is one RunError naming the file.

    Checked before anything is built from it: a regular file (no symlink) of bounded size, the
    metadata, the set of arrays, their dtypes, shapes and finiteness, the code size (against
    `latent_dim` when given), how much memory the loaded sampler would need, and the sampler's
    own constraints (mixture weights a distribution, covariances positive definite).
    """
    path = Path(path)
    check_regular_file(path, path.parent, MAX_FILE_BYTES, f"no sampler file at {path}")
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
    _check_values(arrays, path, latent_dim)
    sampler._set_state(arrays)
    check_shapes(sampler, path)
    _check_budget(sampler, path)
    sampler._finish_load()
    if hasattr(sampler, "_check_loaded"):
        sampler._check_loaded(path)
    return sampler


def _check_values(arrays, path, latent_dim):
    """dtypes, finiteness and the code size of a sampler file's arrays."""
    for name, a in arrays.items():
        integer = name == "active_dims_"
        if (a.dtype.kind != "i") if integer else (a.dtype.kind != "f"):
            raise RunError(f"{path}: {name} has dtype {a.dtype}, expected {'int64' if integer else 'float'}")
        if not integer and not np.isfinite(a).all():
            raise RunError(f"{path}: {name} holds NaN or inf")
    d = arrays["data_min_"].shape
    if len(d) != 1 or not 1 <= d[0] <= MAX_DIMS:
        raise RunError(f"{path}: data_min_ has shape {d}, expected (latent_dim,), latent_dim <= {MAX_DIMS}")
    if latent_dim is not None and d[0] != latent_dim:
        raise RunError(f"{path} was fitted to {d[0]}-d codes; this run's codes have {latent_dim}")
    if (arrays["data_min_"] > arrays["data_max_"]).any() if arrays["data_max_"].shape == d else False:
        raise RunError(f"{path}: data_min_ exceeds data_max_")


def _check_budget(sampler, path):
    """Refuse a file whose loaded form would take more than MAX_EXPANDED_BYTES of memory."""
    if hasattr(sampler, "weights_"):
        k, d = len(sampler.weights_), sampler.n_features_in_
        if k > MAX_COMPONENTS:
            raise RunError(f"{path}: {k:,} mixture components, more than the {MAX_COMPONENTS:,} aelab fits")
        need = 8 * k * d * d
        if need > MAX_EXPANDED_BYTES:
            raise RunError(f"{path}: {k} components of {d} dims would need {need / 2**30:.1f} GiB; "
                           f"aelab loads at most {MAX_EXPANDED_BYTES / 2**30:.0f} GiB")
        w = sampler.weights_
        if (w < 0).any() or abs(w.sum() - 1) > 1e-6:
            raise RunError(f"{path}: weights_ are not a distribution (they must be >= 0 and sum to 1)")


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
