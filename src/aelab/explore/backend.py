"""The computations behind every panel, over one loaded run, each request checked before it runs.

`load_state(run_dir)` loads the run (the same weights `aelab sample` uses), its training and
validation digits and their codes once, and the principal directions of the training codes. The
other functions take a request's JSON object and return a JSON-ready dict: images and codes as
plain float lists, exactly the float32 values `Run.decode` / `Run.reconstruct` returned.

This module is the only one in `aelab.explore` that imports from the rest of aelab: when those
modules move, the imports below are the lines to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aelab import load_run
from aelab.errors import AelabError, RunError
from aelab.files import file_identity
from aelab.samplers.base import principal_axes
from aelab.samplers.fitting import applicable_samplers, run_data

from . import validate
from .drawing import INK, center_like_mnist
from .validate import RequestError

__all__ = ["AelabError", "RunError", "RequestError", "State", "load_state", "check_run", "info",
           "map_points", "reconstruct", "decode", "point", "interpolate"]

MAP_POINTS = 2000     # validation digits on the map
N_DIRECTIONS = 6      # sliders (principal directions of the training codes)
N_NEIGHBOURS = 8      # nearest training digits shown for a drawing
GALLERY_PER_LABEL = 2
MAX_STEPS = 32


@dataclass
class State:
    """One loaded run and what the panels need from its data; `fit` is the sampler fitting status."""

    run: Any
    path: Path
    weights_stat: tuple[int, int, int, int]  # files.file_identity of model.safetensors
    samplers: list[str]
    train_images: np.ndarray   # uint8 (n, 28, 28)
    train_labels: np.ndarray
    train_codes: np.ndarray    # float32 (n, latent_dim)
    val_images: np.ndarray
    val_labels: np.ndarray
    val_codes: np.ndarray
    directions: np.ndarray     # (k, latent_dim): unit principal directions, or the code axes for 2-D
    scales: np.ndarray         # (k,): standard deviation of the training codes along each
    explained: np.ndarray      # (k,): share of the codes' variance along each
    map_xy: np.ndarray         # (m, 2)
    fit: dict[str, str] = field(default_factory=dict)
    fit_thread: Any = None


def _weights_stat(path: Path) -> tuple[int, int, int, int]:
    return file_identity(path / "model.safetensors")


def _principal(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, top-k unit directions (k, d), their standard deviations and variance shares."""
    x = codes.astype(np.float64)
    variances, axes = principal_axes(x)
    values, vectors = variances[:k], axes[:k]
    signs = np.sign(vectors[np.arange(len(vectors)), np.abs(vectors).argmax(axis=1)])
    vectors *= np.where(signs == 0, 1, signs)[:, None]  # deterministic sign: largest entry positive
    total = float(variances.sum()) or 1.0
    return x.mean(axis=0), vectors, np.sqrt(values), values / total


def load_state(run_dir: str | Path, log: Callable[[str], None] = print) -> State:
    """Load the run and its data; raises `AelabError` (one clear line) on a bad folder or data."""
    run = load_run(run_dir, device="cpu")
    path = Path(run.path)
    data = run_data(run, log=log)
    train_images = data.train_images.numpy()
    val_images = data.test_images[:MAP_POINTS].numpy()
    if len(train_images) < 2 or len(val_images) < 1:
        raise RunError(f"{path}: the run's data has too few images to explore")
    train_codes = run.encode(train_images).numpy()
    val_codes = run.encode(val_images).numpy()
    d = run.latent_dim
    if d == 2:  # the code's own axes: the map is the code space itself
        directions = np.eye(2)
        var = train_codes.astype(np.float64).var(axis=0)
        scales, explained = np.sqrt(var), var / (var.sum() or 1.0)
        map_xy = val_codes.astype(np.float64)
    else:
        mean, directions, scales, explained = _principal(train_codes, min(d, N_DIRECTIONS))
        map_xy = (val_codes.astype(np.float64) - mean) @ directions[:2].T
    return State(run=run, path=path, weights_stat=_weights_stat(path), samplers=applicable_samplers(run),
                 train_images=train_images, train_labels=data.train_labels.numpy(),
                 train_codes=train_codes, val_images=val_images,
                 val_labels=data.test_labels[:MAP_POINTS].numpy(), val_codes=val_codes,
                 directions=directions, scales=scales, explained=explained, map_xy=map_xy)


def check_run(state: State) -> None:
    """410 when the run folder is gone, 409 when its weights changed since the server started."""
    try:
        stat = _weights_stat(state.path)
    except OSError:
        raise RequestError(410, f"the run folder {state.path} is gone (moved or deleted while aelab "
                                f"explore ran); start aelab explore again on an existing run") from None
    if stat != state.weights_stat:
        raise RequestError(409, f"the weights in {state.path} changed since aelab explore started "
                                f"(retrained?); restart aelab explore to see the new model")


def _rows(t: torch.Tensor | np.ndarray) -> list[list[float]]:
    """(n, ...) float32 -> n lists of exact float values."""
    a = t.numpy() if isinstance(t, torch.Tensor) else t
    return a.reshape(len(a), -1).astype(np.float64).tolist()


def _pixels(images: np.ndarray) -> list[list[int]]:
    return images.reshape(len(images), -1).astype(int).tolist()


def _decode(state: State, codes: np.ndarray) -> torch.Tensor:
    return state.run.decode(torch.from_numpy(np.ascontiguousarray(codes, dtype=np.float32)))


def info(state: State, body: dict | None = None) -> dict:
    """What the page needs first: the run, its slider directions and a small gallery of digits."""
    cfg = state.run.config
    gallery = [int(i) for label in range(10)
               for i in np.flatnonzero(state.val_labels == label)[:GALLERY_PER_LABEL]]
    return {"run": state.path.name, "kind": cfg.model.kind, "latent_dim": state.run.latent_dim,
            "n_train": len(state.train_images), "n_map": len(state.val_images),
            "samplers": state.samplers,
            "directions": {"axes": "code" if state.run.latent_dim == 2 else "pca",
                           "vectors": state.directions.tolist(), "scales": state.scales.tolist(),
                           "explained": state.explained.tolist()},
            "gallery": [{"index": i, "label": int(state.val_labels[i])} for i in gallery],
            "gallery_images": _pixels(state.val_images[gallery]),
            "limits": {"max_codes": validate.MAX_CODES, "max_steps": MAX_STEPS,
                       "max_body_bytes": validate.MAX_BODY_BYTES}}


def map_points(state: State, body: dict | None = None) -> dict:
    """The validation codes in 2-D (the codes themselves for a 2-D code, else PCA), with labels."""
    pca = state.run.latent_dim != 2
    return {"method": "pca" if pca else "code",
            "axes": ["PC 1", "PC 2"] if pca else ["code 1", "code 2"],
            "explained": state.explained[:2].tolist(),
            "x": state.map_xy[:, 0].tolist(), "y": state.map_xy[:, 1].tolist(),
            "labels": state.val_labels.tolist()}


def reconstruct(state: State, body: dict) -> dict:
    """A drawing -> the model input used, its code, its reconstruction and the nearest training digits."""
    img = validate.image(body)
    center = validate.flag(body, "center", False)
    if img.max() <= INK:
        raise RequestError(400, "the drawing is empty: draw a digit on the pad first")
    x = center_like_mnist(img) if center else img
    code = state.run.encode(torch.from_numpy(x[None]))
    rec = state.run.decode(code)
    dist = ((state.train_codes - code.numpy()) ** 2).sum(axis=1)
    near = np.argsort(dist, kind="stable")[:N_NEIGHBOURS]
    return {"input": _rows(x[None])[0], "code": _rows(code)[0], "reconstruction": _rows(rec)[0],
            "neighbours": [{"index": int(i), "label": int(state.train_labels[i]),
                            "distance": float(np.sqrt(dist[i]))} for i in near],
            "neighbour_images": _pixels(state.train_images[near])}


def decode(state: State, body: dict) -> dict:
    """Codes -> the images `Run.decode` gives for them."""
    z = validate.codes(body, "codes", state.run.latent_dim)
    return {"images": _rows(_decode(state, z))}


def point(state: State, body: dict) -> dict:
    """Validation digit `index` (a map point): its label, image, code, and that code decoded."""
    i = validate.integer(body, "index", -1, 0, len(state.val_images) - 1)
    z = state.val_codes[i:i + 1]
    return {"index": i, "label": int(state.val_labels[i]), "image": _pixels(state.val_images[i:i + 1])[0],
            "code": _rows(z)[0], "decoded": _rows(_decode(state, z))[0]}


def interpolate(state: State, body: dict) -> dict:
    """Straight line in code space from `a` to `b` in `steps` codes (ends included), decoded."""
    d = state.run.latent_dim
    a, b = validate.code(body, "a", d), validate.code(body, "b", d)
    steps = validate.integer(body, "steps", 10, 2, MAX_STEPS)
    t = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
    z = ((1 - t) * a + t * b).astype(np.float32)
    return {"codes": _rows(z), "images": _rows(_decode(state, z))}
