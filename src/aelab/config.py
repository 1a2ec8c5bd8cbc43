"""Typed configuration: the Data, Model and Train dataclasses and their validation.

A run is fully described by a `Config`; it is saved as `config.json` in the run folder, so a
saved run can always rebuild its model and resume its training.

    >>> from aelab.presets import resolve_config
    >>> cfg = resolve_config("seed", {"epochs": 5})
    >>> cfg.train.epochs, cfg.train.lr
    (5, 0.001)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import AelabError

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "Config", "config_from_dict", "apply_overrides",
           "DEVICES", "PRECISIONS"]

DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_LATENT = 1024     # widths 4h = 4096 at most: a model of ~30M parameters
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_THREADS = 1024
PRECISIONS = ("fp32", "bf16")


@dataclass
class DataConfig:
    dataset: str = "mnist"          # a name in aelab.data.DATASETS
    data_dir: str | None = None     # folder with the four IDX files; None: cache/download/bundled


@dataclass
class ModelConfig:
    architecture: str = "dense"     # a name in aelab.models.MODELS
    kind: str = "ae"                # a name in aelab.models.KINDS: "ae" (the tutorial's) or "vae"
    image_dim: int = 784            # 28 * 28 pixels
    latent_dim: int = 128           # h: encoder widths are 4h, 2h, h
    width_dim: int | None = None    # h of the hidden widths 4h, 2h when it differs from latent_dim
    # aelab.models.ACTIVATIONS: "relu" (2nd try), "none" (1st try), "sigmoid"; None: the
    # architecture's own (dense AE: relu; dense VAE, dense-linear, conv: sigmoid), resolved by
    # resolve_config and train, so config.json always names one
    output_activation: str | None = None
    beta: float = 1.0               # VAE only: weight of the KL term
    code_penalty: float = 0.0       # AE only: beta_z of an RAE, loss += beta_z * mean(0.5 * ||z||^2)


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
    schedule: str = "constant"      # a name in aelab.schedules.SCHEDULES: lr as a function of the step
    warmup_epochs: float = 0.0      # lr rises linearly from 0 over this many epochs (onecycle: its rise)
    kl_warmup_epochs: float = 0.0   # VAE: beta rises linearly from 0 over this many epochs
    decoder_weight_decay: float = 0.0  # L2 on the decoder's weights (Adam weight_decay), an RAE's
    augment_shift: int = 0          # training batches: each image moved by up to this many pixels
    # held-out share of the training images for the per-epoch validation; 0: validate on the
    # official test split, as the tutorial does (the seed presets; every run before this field)
    valid_fraction: float = 1 / 12
    threads: int | str = "auto"     # CPU threads: "auto" (measured at the start, aelab.threads) or N
    threads_chosen: int | None = None  # what training uses: N, or what auto measured; None on GPU
    # the hand-written dense step's matrix products on CPU: "auto" (measured with the threads),
    # or a backend of aelab.matmul (torch, onednn); every other step uses torch's own
    matmul: str = "auto"
    matmul_chosen: str | None = None  # what training uses; None on GPU


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
        from .data.registry import DATASETS
        from .models import ACTIVATIONS, KINDS, MODELS
        from .schedules import SCHEDULES

        def choice(name: str, value: str, options) -> tuple[bool, str]:
            options = list(options)
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
                 whole("augment_shift", t.augment_shift),
                 number("lr", t.lr), number("beta", m.beta),
                 number("checkpoint_minutes", t.checkpoint_minutes), number("code_penalty", m.code_penalty),
                 number("warmup_epochs", t.warmup_epochs), number("kl_warmup_epochs", t.kl_warmup_epochs),
                 number("decoder_weight_decay", t.decoder_weight_decay),
                 number("valid_fraction", t.valid_fraction)]
        if m.width_dim is not None:
            types.append(whole("width_dim", m.width_dim))
        for ok, message in types:
            if not ok:
                raise AelabError(message)
        for ok, message in (_check_threads(t.threads, t.threads_chosen),
                            _check_matmul(t.matmul, t.matmul_chosen)):
            if not ok:
                raise AelabError(message)
        checks = [
            (m.latent_dim <= MAX_LATENT, f"latent_dim={m.latent_dim!r} is too large (at most {MAX_LATENT})"),
            (m.width_dim is None or m.width_dim <= MAX_LATENT,
             f"width_dim={m.width_dim!r} is too large (at most {MAX_LATENT})"),
            (t.epochs <= MAX_EPOCHS, f"epochs={t.epochs!r} is too large (at most {MAX_EPOCHS:,})"),
            (t.batch_size <= MAX_BATCH, f"batch_size={t.batch_size!r} is too large (at most {MAX_BATCH:,})"),
            (0 <= t.seed < 2**32, f"seed={t.seed!r} must be from 0 to 2**32 - 1"),
            (self.data.data_dir is None or isinstance(self.data.data_dir, str),
             f"data_dir={self.data.data_dir!r} must be a folder name"),
            (isinstance(self.preset, str), f"preset={self.preset!r} must be a name"),
            (all(isinstance(v, bool) for v in (t.compile, t.tensorboard)), "compile and tensorboard must be "
             "true or false"),
            choice("dataset", self.data.dataset, DATASETS),
            choice("architecture", m.architecture, MODELS),
            choice("kind", m.kind, KINDS),
            (m.output_activation is None or m.output_activation in ACTIVATIONS,
             f"output_activation={m.output_activation!r} must be one of {', '.join(ACTIVATIONS)}"),
            choice("schedule", t.schedule, SCHEDULES),
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
            (m.code_penalty >= 0, f"code_penalty={m.code_penalty!r} must be >= 0"),
            (m.code_penalty == 0 or m.kind == "ae",
             f"code_penalty={m.code_penalty!r} applies to autoencoders (kind ae); a VAE has its KL term"),
            (t.warmup_epochs >= 0, f"warmup_epochs={t.warmup_epochs!r} must be >= 0"),
            (t.warmup_epochs < t.epochs or t.warmup_epochs == 0,
             f"warmup_epochs={t.warmup_epochs!r} must be less than epochs={t.epochs!r}"),
            (t.kl_warmup_epochs >= 0, f"kl_warmup_epochs={t.kl_warmup_epochs!r} must be >= 0"),
            (t.kl_warmup_epochs == 0 or m.kind == "vae",
             f"kl_warmup_epochs={t.kl_warmup_epochs!r} applies to VAEs only (--variational)"),
            (t.decoder_weight_decay >= 0, f"decoder_weight_decay={t.decoder_weight_decay!r} must be >= 0"),
            (0 <= t.augment_shift <= 4, f"augment_shift={t.augment_shift!r} must be in [0, 4] pixels"),
            (0 <= t.valid_fraction <= 0.5,
             f"valid_fraction={t.valid_fraction!r} must be in [0, 0.5] (0: validate on the test split)"),
        ]
        for ok, message in checks:
            if not ok:
                raise AelabError(message)
        return self

    def resolved(self) -> Config:
        """This config with `output_activation` None replaced by the architecture's own."""
        if self.model.output_activation is None:
            from .models import default_output_activation

            self.model.output_activation = default_output_activation(self.model)
        return self


def _check_threads(threads: Any, chosen: Any) -> tuple[bool, str]:
    """threads is "auto" or a whole number 1..MAX_THREADS; threads_chosen is None or one, and equals
    threads when that is a number."""
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_THREADS

    if not (threads == "auto" or count(threads)):
        return False, f"threads={threads!r} must be 'auto' or a whole number from 1 to {MAX_THREADS}"
    if not (chosen is None or count(chosen)):
        return False, f"threads_chosen={chosen!r} must be a whole number from 1 to {MAX_THREADS}"
    if count(threads) and chosen not in (None, threads):
        return False, f"threads_chosen={chosen!r} differs from threads={threads!r}"
    return True, ""


def _check_matmul(matmul: Any, chosen: Any) -> tuple[bool, str]:
    """matmul is "auto" or a backend; matmul_chosen is None or a backend, and equals matmul when
    that names one."""
    from .matmul import AUTO, MATMULS

    names = MATMULS.names()
    if not (isinstance(matmul, str) and matmul in (AUTO, *names)):
        return False, f"matmul={matmul!r} must be one of {', '.join((AUTO, *names))}"
    if not (chosen is None or (isinstance(chosen, str) and chosen in names)):
        return False, f"matmul_chosen={chosen!r} must be one of {', '.join(names)}"
    if matmul != AUTO and chosen not in (None, matmul):
        return False, f"matmul_chosen={chosen!r} differs from matmul={matmul!r}"
    return True, ""


# ---------------------------------------------------------------------------------------------

def section_of(cfg: Config, key: str) -> str:
    """The section (data, model, train) that holds config field `key`."""
    for section in ("data", "model", "train"):
        if key in {f.name for f in fields(getattr(cfg, section))}:
            return section
    raise AelabError(f"unknown config field {key!r}")


def apply_overrides(cfg: Config, overrides: dict[str, Any] | None = None) -> Config:
    """`cfg` with flat overrides (`{"lr": 0.01, "epochs": 3}`) applied in place; `None`s skipped."""
    if overrides is not None and not isinstance(overrides, dict):
        raise AelabError(f"overrides must be a dict of field: value, got {type(overrides).__name__}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        setattr(getattr(cfg, section_of(cfg, key)), key, value)
    return cfg


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from `Config.to_dict()` output (e.g. a run's config.json)."""
    try:
        # runs saved before valid_fraction existed validated on the test split, and those from
        # before matmul existed multiplied with torch's own products
        train = {"valid_fraction": 0.0, "matmul": "torch", **d["train"]}
        return Config(
            preset=d["preset"],
            data=DataConfig(**d["data"]),
            model=ModelConfig(**d["model"]),
            train=TrainConfig(**train),
        ).validate().resolved()
    except (KeyError, TypeError) as e:
        raise AelabError(f"config is not an aelab config ({e})") from None


def replace_train(cfg: Config, **changes: Any) -> Config:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
