"""A run folder on disk: its layout, its lock, and validated reads and atomic writes of its files.

    RUN_DIR/
      config.json          resolved Config + the data it used (name, source, checksums, counts)
      metrics.jsonl        one JSON line per finished epoch
      model.safetensors    final weights (written when training ends)
      checkpoint.safetensors  full training state after the last epoch (or mid-epoch)
      figures/             epoch_NNN.png, loss.png, result_input.png, result_output.png
      .lock                held while a process trains into the folder
    and, from later commands: samples/, samplers/ (fitted, reused), explain/, evaluation.json,
    report.html, tensorboard/. `--force` removes exactly these outputs; resuming drops samplers/.

`aelab.run.load_run(path)` reads a folder through `RunDir` and gives a `Run`.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from . import runlock
from .checks import is_finite
from .config import Config, config_from_dict
from .errors import AelabError, DivergedError, RunError
from .files import (
    atomic_write_bytes,
    check_regular_file,
    is_file_inside,
    parse_json,
    read_inside,
    writable_dir,
    write_json,
)
from .records import check_data_record, check_metrics

__all__ = ["RunDir", "read_weights", "MARKER"]

MARKER = ".aelab-run"  # written into every run folder aelab creates; --force needs it
MAX_JSON_BYTES = 16 << 20  # config.json, metrics.jsonl, evaluation.json, explain texts
MAX_PNG_BYTES = 32 << 20
MAX_WEIGHTS_BYTES = 2 << 30
# what each command writes, by folder: `--force` removes these and nothing else
OUTPUTS = {".": ("config.json", "metrics.jsonl", "model.safetensors", "checkpoint.safetensors",
                 "evaluation.json", "evaluation.md", "report.html", "final.json", "compare-scores.json"),
           "figures": ("epoch_[0-9][0-9][0-9].png", "loss.png", "result_input.png", "result_output.png",
                       "interpolation.png", "manifold.png", "codes.png"),
           "samples": ("*.png",), "samplers": ("*.safetensors",), "evaluation": ("*.png", "*.json"),
           "explain": ("explain.md", "explain.json", "*.png"), "tensorboard": ("events.out.tfevents.*",)}


class RunDir:
    """Paths and safe file operations of one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.model = self.path / "model.safetensors"
        self.checkpoint = self.path / "checkpoint.safetensors"
        self.figures = self.path / "figures"
        self.lockfile = self.path / ".lock"

    def prepare(self, resume: bool = False, force: bool = False) -> None:
        """Create the folder; refuse to write into an existing run unless resuming or forced.

        Refuses first of all when another process holds the folder's lock, so `--force` never
        deletes the files of a run that is still training.
        """
        runlock.refuse_if_held(self.path, self.lockfile)
        if resume:
            if not self.checkpoint.is_file():
                raise RunError(f"cannot resume: {self.path} has no checkpoint.safetensors")
            self._check_writable()  # now, not after an epoch's work
            self._remove_outputs(("samplers",))  # fitted to codes of weights about to change
            if (self.path / "final.json").is_file():  # scored on those weights too
                (self.path / "final.json").unlink()
            return
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            raise RunError(f"{self.path} exists and is not a folder")
        holds_files = self.path.is_dir() and self._holds_files()
        if holds_files and not force:
            raise RunError(f"{self.path} already holds a run; continue it with --resume (resume=True in "
                           f"Python) or overwrite it with --force (force=True)")
        if holds_files and not self.is_aelab_run():
            raise RunError(f"{self.path} holds files aelab did not write (no {MARKER} marker); "
                           f"--force (force=True) overwrites only aelab run folders: choose another folder")
        if holds_files:
            self._check_writable()  # before --force deletes anything: a refusal keeps the old run
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if force:
                self._remove_outputs()
            atomic_write_bytes(self.path / MARKER, b"aelab run folder\n")
            writable_dir(self.figures)
        except OSError as e:
            raise RunError(f"cannot create run folder {self.path}: {e.strerror or e}") from None

    def is_aelab_run(self) -> bool:
        """Whether aelab wrote this folder: its marker, or (from before markers) a readable config."""
        if is_file_inside(self.path / MARKER, self.path):
            return True
        try:
            saved = parse_json(read_inside(self.config, self.path, MAX_JSON_BYTES), self.config)
            return isinstance(saved, dict) and "aelab" in saved.get("versions", {})
        except (RunError, AttributeError):
            return False

    def _remove_outputs(self, folders: tuple[str, ...] = tuple(OUTPUTS)) -> None:
        """Delete what aelab's commands write (`OUTPUTS`) and nothing else, then empty folders."""
        for folder in folders:
            patterns, base = OUTPUTS[folder], self.path / folder
            if base.is_symlink() or not base.is_dir():
                continue
            for pattern in patterns:
                for p in base.glob(pattern):
                    if p.is_symlink() or p.is_file():
                        p.unlink()
            if folder != "." and not any(base.iterdir()):
                base.rmdir()

    def _check_writable(self) -> None:
        """Refuse (one `RunError`) a folder training could not write into to the end: an output
        folder that is a symlink or a file, a folder where an output file, the marker or the lock
        goes."""
        for folder in (f for f in OUTPUTS if f != "."):
            if (self.path / folder).exists() or (self.path / folder).is_symlink():
                writable_dir(self.path / folder)
        for name in (MARKER, self.lockfile.name):
            if (self.path / name).is_dir():
                raise RunError(f"{self.path / name} is a folder; aelab writes a file there")
        for folder in (".", "figures"):  # what training writes (figures/loss.png a folder: failed at the end)
            for path in (p for pattern in OUTPUTS[folder] for p in (self.path / folder).glob(pattern)):
                if path.is_dir():
                    raise RunError(f"{path} is a folder; aelab writes a file there")
        if self.lockfile.is_symlink():
            raise RunError(f"{self.lockfile} is a symlink; aelab writes only real files in a run folder")

    def remove_if_unused(self, top: Path) -> None:
        """Remove what `prepare` created for a start that then failed (data missing, say): the
        marker, an empty `figures/`, then each empty folder from this one up to `top` (the first
        that did not exist before). Anything else in them keeps them."""
        try:
            if self.path.is_symlink() or not self.path.is_dir() or self._holds_files():
                return
            for p in (self.lockfile, self.path / MARKER):
                if p.is_symlink() or p.is_file():
                    p.unlink()
            if self.figures.is_dir() and not self.figures.is_symlink() and not any(self.figures.iterdir()):
                self.figures.rmdir()
            for folder in (self.path, *self.path.parents):
                if not folder.is_dir() or folder.is_symlink() or any(folder.iterdir()):
                    break
                folder.rmdir()
                if folder == top:
                    break
        except OSError:
            pass  # left as it was: a later start into it still works (_holds_files)

    def _holds_files(self) -> bool:
        """Anything beyond what a start that failed early leaves behind (`.lock`, an empty `figures/`)."""
        for p in self.path.iterdir():
            if p.name in (".lock", MARKER) or (p == self.figures and p.is_dir() and not any(p.iterdir())):
                continue
            return True
        return False

    def lock(self) -> AbstractContextManager[None]:
        """Hold the folder's lock while training into it (`aelab.runlock.hold`)."""
        return runlock.hold(self.path, self.lockfile)

    # --- files -----------------------------------------------------------------------------
    def write_json(self, path: Path, obj: Any) -> None:
        write_json(path, obj)

    def write_metrics(self, records: list[dict]) -> None:
        atomic_write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in records).encode())

    def read_bytes(self, path: Path, max_bytes: int = MAX_JSON_BYTES) -> bytes:
        """A file of this run folder, read without following symlinks, at most `max_bytes`."""
        return read_inside(path, self.path, max_bytes)

    def read_json(self, path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
        return parse_json(self.read_bytes(path, max_bytes), path)

    def read_text(self, path: Path, max_bytes: int = MAX_JSON_BYTES) -> str:
        try:
            return self.read_bytes(path, max_bytes).decode("utf-8")
        except UnicodeDecodeError:
            raise RunError(f"{path} is not UTF-8 text") from None

    def read_png(self, path: Path) -> bytes:
        data = self.read_bytes(path, MAX_PNG_BYTES)
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise RunError(f"{path} is not a PNG image")
        return data

    def has_file(self, path: Path) -> bool:
        """A regular file inside the folder, reached without symlinks."""
        return is_file_inside(path, self.path)

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists() and not self.metrics.is_symlink():
            return []
        text = self.read_text(self.metrics)
        records = [parse_json(line.encode(), f"{self.metrics} line {n}")
                   for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        return check_metrics(records, str(self.metrics))

    def read_saved_config(self) -> dict:
        """config.json as saved: {"config": ..., "data": ..., "versions": ...}, checked as JSON."""
        if not self.path.is_dir():
            raise RunError(f"no run folder at {self.path}")
        if not self.config.exists() and not self.config.is_symlink():
            raise RunError(f"{self.path} is not a run folder (no config.json)")
        saved = self.read_json(self.config)
        if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
            raise RunError(f"{self.config} is not an aelab config")
        return saved

    def read_config(self) -> tuple[Config, dict]:
        """The run's Config and the data record saved beside it, both validated."""
        saved = self.read_saved_config()
        try:
            cfg = config_from_dict(saved["config"])
        except AelabError as e:
            raise RunError(f"{self.config}: {e}") from None
        return cfg, check_data_record(saved.get("data"), str(self.config))

    def write_weights(self, model: torch.nn.Module, path: Path | None = None) -> None:
        """Atomically write the model's weights; refuses (and writes nothing) if any is NaN or inf."""
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        bad = [k for k, v in state.items() if not is_finite(v)]
        if bad:
            raise DivergedError(f"refusing to write {path or self.model}: {bad[0]} is non-finite; "
                                f"try a lower --lr")
        atomic_write_bytes(path or self.model, save(state, metadata={"format": "aelab-weights-1"}))


def read_weights(path: Path, root: Path | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (inside folder `root`, no symlinks), every one finite."""
    root = root or path.parent
    check_regular_file(path, root, MAX_WEIGHTS_BYTES, f"no weights at {path}: the run has not finished "
                       f"(continue it with aelab train --resume, or resume=True in Python)")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for malformed headers
        raise RunError(f"weights file {path} is corrupt or truncated ({type(e).__name__})") from None
    for k, v in tensors.items():  # a cast on loading would hide the damage: int32 weights truncate
        want = torch.int64 if k.endswith("num_batches_tracked") else torch.float32
        if v.dtype != want:
            raise RunError(f"weights file {path}: {k} is {v.dtype}, aelab writes {want}; the file is damaged")
    bad = [k for k, v in tensors.items() if not is_finite(v)]
    if bad:
        raise RunError(f"weights file {path}: {bad[0]} holds NaN or inf; the file is damaged")
    return tensors
