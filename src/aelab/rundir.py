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

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from .checks import is_finite
from .config import Config, config_from_dict
from .errors import DivergedError, RunError
from .files import atomic_write_bytes, write_json

__all__ = ["RunDir", "read_weights"]


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
        self._refuse_if_locked()
        if resume:
            if not self.checkpoint.is_file():
                raise RunError(f"cannot resume: {self.path} has no checkpoint.safetensors")
            if (self.path / "samplers").is_dir():  # fitted to codes of weights about to change
                shutil.rmtree(self.path / "samplers")
            return
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path} exists and is not a folder")
        if self.path.is_dir() and self._holds_files() and not force:
            raise RunError(f"{self.path} already holds a run; use --resume to continue it "
                           f"or --force to overwrite it")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.figures.mkdir(exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create run folder {self.path}: {e.strerror or e}") from None
        if force:  # what aelab wrote there, and only that: the new run must not show old results
            for p in (self.metrics, self.model, self.checkpoint, self.config, self.path / "evaluation.json",
                      self.path / "evaluation.md", self.path / "report.html"):
                p.unlink(missing_ok=True)
            for d in (self.figures, self.path / "samples", self.path / "samplers", self.path / "explain",
                      self.path / "tensorboard"):
                if d.is_dir():
                    shutil.rmtree(d)
            self.figures.mkdir()

    def _holds_files(self) -> bool:
        """Anything beyond what a start that failed early leaves behind (`.lock`, an empty `figures/`)."""
        for p in self.path.iterdir():
            if p.name == ".lock" or (p == self.figures and p.is_dir() and not any(p.iterdir())):
                continue
            return True
        return False

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock so two processes never train into the same folder.

        The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a
        stale `.lock` file never blocks a resume. The holder's pid is written into it for the
        message the next process shows.
        """
        try:
            fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"cannot lock {self.path}: {e.strerror or e}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(self._busy_message(fd)) from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the pid is only for the message; the lock itself is held
            yield
        finally:
            os.close(fd)

    def _busy_message(self, fd: int) -> str:
        try:
            pid = os.pread(fd, 32, 0).decode().strip()
        except (OSError, UnicodeDecodeError):
            pid = ""
        holder = f" (pid {pid})" if pid.isdigit() else ""
        return f"another process{holder} is training into {self.path}"

    def _refuse_if_locked(self) -> None:
        """Raise `RunError` if a live process holds this folder's lock; never creates anything."""
        try:
            fd = os.open(self.lockfile, os.O_RDONLY)
        except OSError:
            return  # no lock file (or unreadable): nobody is training here
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(self._busy_message(fd)) from None
            except OSError:
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # --- files -----------------------------------------------------------------------------
    def write_json(self, path: Path, obj: Any) -> None:
        write_json(path, obj)

    def write_metrics(self, records: list[dict]) -> None:
        atomic_write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in records).encode())

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        try:
            return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]
        except ValueError:
            raise RunError(f"{self.metrics} is not valid JSON lines") from None

    def read_config(self) -> tuple[Config, dict]:
        """The run's Config and the data record saved beside it."""
        if not self.path.is_dir():
            raise RunError(f"no run folder at {self.path}")
        try:
            d = json.loads(self.config.read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a run folder (no config.json)") from None
        except ValueError:
            raise RunError(f"{self.config} is not valid JSON") from None
        if not isinstance(d, dict):
            raise RunError(f"{self.config} is not an aelab config")
        return config_from_dict(d.get("config", {})), d.get("data", {})

    def write_weights(self, model: torch.nn.Module, path: Path | None = None) -> None:
        """Atomically write the model's weights; refuses (and writes nothing) if any is NaN or inf."""
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        bad = [k for k, v in state.items() if not is_finite(v)]
        if bad:
            raise DivergedError(f"refusing to write {path or self.model}: {bad[0]} is non-finite; "
                                f"try a lower --lr")
        atomic_write_bytes(path or self.model, save(state, metadata={"format": "aelab-weights-1"}))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RunError(f"no weights at {path}: the run has not finished (try --resume)")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise RunError(f"weights file {path} is corrupt or truncated ({type(e).__name__})") from None


