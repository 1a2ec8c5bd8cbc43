"""Typed configuration and the preset registry.

A run is fully described by a `Config`; it is saved as `config.json` in the run folder, so a
saved run can always rebuild its model and resume its training.

    >>> cfg = resolve_config("seed", {"epochs": 5})
    >>> cfg.train.epochs, cfg.train.lr
    (5, 0.001)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import AelabError

__all__ = [
    "DataConfig", "ModelConfig", "TrainConfig", "Config",
    "register_preset", "list_presets", "get_preset", "resolve_config", "config_from_dict",
]

DATASETS = ("mnist", "fashion-mnist", "kmnist")
OUTPUT_ACTIVATIONS = ("relu", "none", "sigmoid")
MODEL_KINDS = ("ae", "vae")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")


@dataclass
class DataConfig:
    dataset: str = "mnist"          # one of DATASETS
    data_dir: str | None = None     # folder with the four IDX files; None: cache/download/bundled


@dataclass
class ModelConfig:
    kind: str = "ae"                # "ae" (the tutorial's) or "vae"
    image_dim: int = 784            # 28 * 28 pixels
    latent_dim: int = 128           # h: encoder widths are 4h, 2h, h
    width_dim: int | None = None    # h of the hidden widths 4h, 2h when it differs from latent_dim
    output_activation: str = "relu"  # "relu" (2nd try), "none" (1st try), "sigmoid"
    beta: float = 1.0               # VAE only: weight of the KL term


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"            # auto picks cuda, then mps, then cpu
    precision: str = "fp32"         # "fp32" or "bf16" (autocast)
    compile: bool = False           # torch.compile the model
    checkpoint_minutes: float = 10.0  # also checkpoint inside long epochs
    tensorboard: bool = False


@dataclass
class Config:
    preset: str = "seed"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> Config:
        """Raise `AelabError` naming the first bad value; return self."""
        def choice(name: str, value: str, options: tuple[str, ...]) -> tuple[bool, str]:
            return value in options, f"{name}={value!r} must be one of {', '.join(options)}"

        m, t = self.model, self.train

        def whole(name: str, value: Any) -> tuple[bool, str]:
            return (isinstance(value, int) and not isinstance(value, bool),
                    f"{name}={value!r} must be a whole number")

        def number(name: str, value: Any) -> tuple[bool, str]:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            return ok, f"{name}={value!r} must be a finite number"

        types = [whole("latent_dim", m.latent_dim), whole("image_dim", m.image_dim),
                 whole("epochs", t.epochs), whole("batch_size", t.batch_size), whole("seed", t.seed),
                 number("lr", t.lr), number("beta", m.beta),
                 number("checkpoint_minutes", t.checkpoint_minutes)]
        if m.width_dim is not None:
            types.append(whole("width_dim", m.width_dim))
        for ok, message in types:
            if not ok:
                raise AelabError(message)
        checks = [
            (m.latent_dim <= 4096, f"latent_dim={m.latent_dim!r} is too large (at most 4096)"),
            (m.width_dim is None or m.width_dim <= 4096,
             f"width_dim={m.width_dim!r} is too large (at most 4096)"),
            choice("dataset", self.data.dataset, DATASETS),
            choice("kind", m.kind, MODEL_KINDS),
            choice("output_activation", m.output_activation, OUTPUT_ACTIVATIONS),
            choice("device", t.device, DEVICES),
            choice("precision", t.precision, PRECISIONS),
            (m.latent_dim >= 1, f"latent_dim={m.latent_dim!r} must be at least 1"),
            (m.width_dim is None or m.width_dim >= 1, f"width_dim={m.width_dim!r} must be at least 1"),
            (m.image_dim == 784, f"image_dim={m.image_dim!r}: aelab's datasets are 28x28 = 784"),
            (m.beta >= 0, f"beta={m.beta!r} must be >= 0"),
            (t.epochs >= 1, f"epochs={t.epochs!r} must be at least 1"),
            (t.batch_size >= 2, f"batch_size={t.batch_size!r} must be at least 2 (BatchNorm)"),
            (t.lr > 0, f"lr={t.lr!r} must be positive"),
            (t.checkpoint_minutes > 0, f"checkpoint_minutes={t.checkpoint_minutes!r} must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise AelabError(message)
        return self


# ---------------------------------------------------------------------------------------------
# Preset registry: a name -> a function returning a fresh Config.

_PRESETS: dict[str, tuple[Callable[[], Config], str]] = {}


def register_preset(name: str, help: str) -> Callable[[Callable[[], Config]], Callable[[], Config]]:
    def wrap(fn: Callable[[], Config]) -> Callable[[], Config]:
        _PRESETS[name] = (fn, help)
        return fn
    return wrap


def list_presets() -> dict[str, str]:
    """Preset names and one-line descriptions, in registration order."""
    return {name: help for name, (_, help) in _PRESETS.items()}


def get_preset(name: str) -> Config:
    if name not in _PRESETS:
        raise AelabError(f"unknown preset {name!r}; choose from {', '.join(_PRESETS)}")
    cfg = _PRESETS[name][0]()
    cfg.preset = name
    return cfg


@register_preset("seed", "the tutorial's 2nd try: Adam lr 1e-3, batch 128, 20 epochs, MSE, final ReLU")
def _seed() -> Config:
    return Config()


@register_preset("seed-1st-try", "the tutorial's 1st try: lr 0.1 and no final ReLU")
def _seed_first_try() -> Config:
    cfg = Config()
    cfg.train.lr = 0.1
    cfg.model.output_activation = "none"
    return cfg


@register_preset("vae", "VAE with the tutorial's widths: Gaussian encoder, BCE + beta*KL, sigmoid "
                 "output, Adam lr 3e-3, 150 epochs")
def _vae() -> Config:
    # Chosen by `bash scripts/vae_tuning.sh` (12k MNIST subset, classifier FID of 5,000 prior
    # samples): lr 1e-3 gave 185 / 145 / 129 / 119 after 20 / 50 / 100 / 150 epochs; lr 3e-3
    # gave 133 after 50 and 108 after 150 (119 with --seed 1), at about 3 minutes of 2-core CPU.
    # The validation loss hardly moves after 50 epochs (104.0 -> 103.1); the prior samples
    # improve. Not better at 50 epochs: beta 0.5 (156) or 2 (142), batch 64 (155) or 256 (137).
    cfg = Config()
    cfg.model.kind = "vae"
    cfg.model.output_activation = "sigmoid"
    cfg.train.epochs = 150
    cfg.train.lr = 3e-3
    return cfg


# ---------------------------------------------------------------------------------------------

def _section_of(cfg: Config, key: str) -> str:
    for section in ("data", "model", "train"):
        if key in {f.name for f in fields(getattr(cfg, section))}:
            return section
    raise AelabError(f"unknown config field {key!r}")


def resolve_config(preset: str, overrides: dict[str, Any] | None = None) -> Config:
    """The preset's config with flat overrides (`{"lr": 0.01, "epochs": 3}`) applied; `None`s skipped."""
    cfg = get_preset(preset)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        setattr(getattr(cfg, _section_of(cfg, key)), key, value)
    return cfg.validate()


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from `Config.to_dict()` output (e.g. a run's config.json)."""
    try:
        return Config(
            preset=d["preset"],
            data=DataConfig(**d["data"]),
            model=ModelConfig(**d["model"]),
            train=TrainConfig(**d["train"]),
        ).validate()
    except (KeyError, TypeError) as e:
        raise AelabError(f"config is not an aelab config ({e})") from None


def replace_train(cfg: Config, **changes: Any) -> Config:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
