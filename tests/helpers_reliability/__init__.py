"""Helpers for the reliability tests: a small real IDX data folder, aelab subprocesses, stderr checks."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

SHARED_MNIST = Path(os.environ.get("AELAB_TEST_MNIST")
                    or Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist-subset")
FAULTY_AELAB = Path(__file__).with_name("faulty_aelab.py")
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def write_small_idx_dir(dest: Path, n_train: int = 1500, n_test: int = 500) -> Path:
    """The first n_train / n_test real MNIST images and labels, as the four gzipped IDX files."""
    from aelab.data import read_idx

    dest.mkdir(parents=True, exist_ok=True)
    for name, n in zip(IDX_FILES, (n_train, n_train, n_test, n_test)):
        a = read_idx(SHARED_MNIST / name)[:n]
        header = bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
        (dest / name).write_bytes(gzip.compress(header + a.tobytes(), mtime=0))
    return dest


def aelab_command(args: list[str]) -> list[str]:
    """`python faulty_aelab.py ARGS`: the real CLI, plus whatever AELAB_TEST_FAULT asks for."""
    return [sys.executable, str(FAULTY_AELAB), *map(str, args)]


def run_aelab(args: list[str], fault: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, AELAB_TEST_FAULT=fault)
    return subprocess.run(aelab_command(args), env=env, capture_output=True, text=True, timeout=timeout)


def start_aelab(args: list[str], fault: str = "") -> subprocess.Popen:
    env = dict(os.environ, AELAB_TEST_FAULT=fault)
    return subprocess.Popen(aelab_command(args), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def file_version(path: Path) -> tuple[int, int] | None:
    """(inode, mtime_ns): changes each time an atomic write replaces the file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def wait_for_new_versions(proc: subprocess.Popen, path: Path, n: int, timeout: float = 120) -> int:
    """Poll until `path` has been replaced `n` times or `proc` ended; return how many were seen."""
    seen, last = 0, file_version(path)
    deadline = time.monotonic() + timeout
    while seen < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
        now = file_version(path)
        if now != last and now is not None:
            seen, last = seen + 1, now
    return seen


def kill_hard(proc: subprocess.Popen) -> tuple[int, str]:
    """SIGKILL (if still running) and return (returncode, stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def message_lines(stderr: str) -> list[str]:
    """stderr lines that are not aelab's informational notices (data checksum notice, resume line)."""
    return [line for line in stderr.splitlines() if line.strip()
            and not line.startswith(("notice:", "aelab: resuming", "fault:"))]


def metric_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    """(exit code, non-empty stderr lines) of `aelab ARGV` in this process; an escaping exception
    fails the test, as it would print a traceback."""
    import pytest

    from aelab.cli import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # noqa: BLE001 - exactly what the tests look for
        pytest.fail(f"aelab {' '.join(argv)} would print a traceback: {type(e).__name__}: {e}")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def interrupt_after_steps(monkeypatch, n: int, across_runs: bool = False) -> None:
    """Send this process SIGINT (Ctrl-C) right after optimizer step `n` of each training run that
    `aelab.training.train` starts from now on, or with `across_runs` after the n-th step counted
    over all of them (`aelab compare` trains several in one process)."""
    import aelab.training

    real_make = aelab.training.make_optimizer
    total = [0]

    def make_optimizer(*args, **kwargs):
        opt = real_make(*args, **kwargs)
        steps = total if across_runs else [0]

        def hook(*_):
            steps[0] += 1
            if steps[0] == n:
                os.kill(os.getpid(), signal.SIGINT)
        opt.register_step_post_hook(hook)
        return opt
    monkeypatch.setattr(aelab.training, "make_optimizer", make_optimizer)
