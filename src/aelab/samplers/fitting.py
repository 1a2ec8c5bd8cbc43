"""Samplers for a run: fit one on the run's training codes once, save it, reuse it.

    codes = sample_codes(run, "gmm", n=64, seed=0)   # (64, latent_dim) float32 tensor
    images = run.decode(codes)

Fitted samplers live in `RUN_DIR/samplers/<name>.safetensors` (no pickle) and are refitted
only when missing or fitted with other parameters.

For an autoencoder whose code passes a final ReLU (the tutorial's), fitted samplers model the
code *before* that ReLU and their draws pass through it: sampled codes then have exactly the
zeros real codes have, where a density fitted after the ReLU smears mass over the kink at 0.
Measured on the seed run (12k MNIST subset, 10-component GMM, 5,000 samples): FID 110 before
the ReLU against 139 after it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aelab.checks import require_finite
from aelab.data import ImageData, bundled_dir, load_dataset, load_split_files
from aelab.errors import AelabError, RunError
from aelab.files import check_inside, file_identity

from .fileformat import load_sampler, saved_fitted_on, saved_params
from .registry import RECOMMENDED, create_sampler

if TYPE_CHECKING:
    from aelab.run import Run

__all__ = ["RECOMMENDED", "applicable_samplers", "run_data", "training_codes", "fitted_sampler",
           "sample_codes", "sampler_defaults", "saved_is_current"]

NEEDS_FIT = ("gaussian", "gmm", "flow", "diffusion", "two-stage")

# The gmm for a VAE run: most of a VAE's code dims are posterior-collapsed (14 of the vae preset's
# 128 hold 99.8% of the variance), so the mixture models the axes that carry the variance
# (basis "whitened") with more, tighter components. Measured on the vae preset's run (FID of
# 5,000 decoded samples; ceiling 15.04): the autoencoder default 25.5; whitened, 1000 components
# 20.4; 2500 components, reg_covar 0.005: README "Every sampler, measured". An autoencoder's gmm
# keeps the sampler's own defaults (whitened measured worse there: 34.2 against 31.0).
VAE_GMM = {"basis": "whitened", "n_components": 2500, "reg_covar": 0.005}


def sampler_defaults(kind: str, name: str) -> dict[str, Any]:
    """Settings sampler `name` gets on a run of model kind `kind` ("ae", "vae") unless the caller
    passes its own."""
    return dict(VAE_GMM) if name == "gmm" and kind == "vae" else {}


def applicable_samplers(run: Run | str, every: bool = False) -> list[str]:
    """Samplers that make sense for this run (or model kind, "ae" or "vae"): `prior` for a VAE,
    the tutorial's `normal` for an AE.

    `every`: also the neural ones (flow, diffusion, and two-stage for a VAE), which take minutes
    to fit on a CPU; `aelab evaluate` and the explorer offer them only when asked.
    """
    vae = (run if isinstance(run, str) else run.config.model.kind) == "vae"
    fast = ["prior" if vae else "normal", "gaussian", "gmm"]
    return fast + (["flow", "diffusion"] + (["two-stage"] if vae else []) if every else [])


def run_data(run: Run, log=lambda line: print(line, file=sys.stderr)) -> ImageData:
    """The dataset the run was trained on, checked against the checksums saved with the run.

    Training already said where its data came from; here only a difference is worth a line. A
    run trained on the bundled subset reads it again directly (no download is tried).
    """
    cfg = run.config.data
    if run.data_info.get("source") == "bundled subset" and not cfg.data_dir:
        data = load_split_files(bundled_dir(), cfg.dataset, "bundled subset")
    else:
        data = load_dataset(cfg.dataset, cfg.data_dir, log=lambda line: None, progress=False)
    saved = run.data_info.get("files")
    if saved and saved != data.files:
        log(f"aelab: warning: the {cfg.dataset} files found now differ from those {run.path} "
            f"was trained on ({run.data_info.get('source')})")
    n_saved = run.data_info.get("n_train")
    if n_saved and n_saved < len(data.train_images):  # e.g. a run trained on a slice in tests
        data = dataclasses.replace(data, train_images=data.train_images[:n_saved],
                                   train_labels=data.train_labels[:n_saved])
    return data


def models_preactivation(run: Run) -> bool:
    """True when fitted samplers of this run model the code before the encoder's final ReLU."""
    return hasattr(run.model, "encode_preactivation")


def training_codes(run: Run, data: ImageData | None = None,
                   preactivation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Codes (n_train, latent_dim) float32 of the run's training images, and their labels."""
    data = data or run_data(run)
    codes = run.encode(data.train_images, preactivation=preactivation)
    return codes.numpy(), data.train_labels.numpy()


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fitted_sampler(run: Run, name: str, data: ImageData | None = None, codes: np.ndarray | None = None,
                   **kwargs: Any):
    """The sampler `name` fitted on the run's training codes, loaded from the run folder if saved.

    `codes`: the training codes when the caller has them already (`training_codes(run, data,
    preactivation=models_preactivation(run))[0]`), so that several samplers encode once.
    """
    if name == "prior" and run.config.model.kind != "vae":
        raise AelabError("the prior sampler applies to VAE runs only; an autoencoder has no prior "
                         "(use gaussian or gmm)")
    sampler = create_sampler(name, **{**sampler_defaults(run.config.model.kind, name), **kwargs})
    if name not in NEEDS_FIT:  # nothing to learn but the code size
        return sampler.fit(np.zeros((2, run.latent_dim), dtype=np.float32))
    path = run.path / "samplers" / f"{name}.safetensors"
    check_inside(path, run.path)  # never read or write through a symlinked samplers/ folder
    known = run.loaded_samplers.get(name)
    if known and known[0] == _identity(path) and known[1].get_config() == sampler.get_config():
        return known[1]  # loaded or fitted before, and the file has not changed since
    if path.exists() or path.is_symlink():
        try:  # the header first: a file fitted on other weights is not worth loading (a gmm: 33 MB)
            same_weights = saved_fitted_on(path) == run.weights_digest
            saved = load_sampler(path, latent_dim=run.latent_dim) if same_weights else None
        except RunError as e:
            raise RunError(f"{e}; delete it to fit the {name} sampler again") from None
        if saved is not None and saved.get_config() == sampler.get_config():
            run.loaded_samplers[name] = (file_identity(path), saved)
            return saved
        if not same_weights:
            _log(f"aelab: {path} was fitted on other weights than the run's now (or by an aelab that "
                 f"did not record them); fitting it again")
    if codes is None:
        codes = training_codes(run, data, preactivation=models_preactivation(run))[0]
    _log(f"aelab: fitting the {name} sampler on {len(codes)} training codes of {codes.shape[1]} dims "
         f"(once; saved to {path.parent})")
    started = time.perf_counter()
    sampler.fit(codes)
    _log(f"aelab: fitted {name} in {time.perf_counter() - started:.1f} s")
    try:
        sampler.save(path, fitted_on=run.weights_digest)
    except RunError as e:  # a full or read-only disk: the samples are still good, only not cached
        print(f"aelab: warning: the fitted sampler is not saved ({e})", file=sys.stderr)
    run.loaded_samplers[name] = (_identity(path), sampler)  # unsaved, kept for this process at least
    return sampler


def _identity(path) -> tuple | None:
    """`file_identity(path)`, or None where there is no file."""
    try:
        return file_identity(path)
    except OSError:
        return None


def saved_is_current(run: Run, name: str) -> bool:
    """Whether RUN_DIR/samplers/<name>.safetensors holds sampler `name` with the settings
    `fitted_sampler` uses now (read from the file's header), so that sampling needs no fitting; a
    file fitted under older defaults, or not a sampler file, is not."""
    if name not in NEEDS_FIT:
        return True
    path = run.path / "samplers" / f"{name}.safetensors"
    try:
        check_inside(path, run.path)
        saved_name, params = saved_params(path)
        if saved_fitted_on(path) != run.weights_digest:
            return False  # fitted on other weights: sampling would fit it again
    except AelabError:  # RunError included: missing, a symlink, damaged
        return False
    want = create_sampler(name, **sampler_defaults(run.config.model.kind, name)).get_config()
    return saved_name == name and params == json.loads(json.dumps(want, default=int))


def sample_codes(run: Run, name: str, n: int, seed: int = 0, data: ImageData | None = None,
                 codes: np.ndarray | None = None, **kwargs: Any) -> torch.Tensor:
    """Codes (n, latent_dim) float32 drawn by sampler `name` for `run` (`codes`: see `fitted_sampler`)."""
    sampler = fitted_sampler(run, name, data, codes, **kwargs)
    codes = torch.from_numpy(np.ascontiguousarray(sampler.sample(n, seed), dtype=np.float32))
    require_finite(codes, f"the {name} sampler of {run.path} drew NaN or inf codes", RunError)
    if name in NEEDS_FIT and models_preactivation(run):
        codes = torch.relu(codes)  # the encoder's own final ReLU
    return codes
