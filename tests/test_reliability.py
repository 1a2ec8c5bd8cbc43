"""Never lose a run: kills, Ctrl-C, locks, full and read-only disks, and diverging numerics.

Real training subprocesses on real MNIST images (1,500 train / 500 test, gzipped IDX in a tmp
folder). Faults are real: SIGKILL from outside at random moments, or SIGKILL the process sends
itself at an exact point (tests/helpers_reliability/faulty_aelab.py), a kernel file-size limit,
a tiny tmpfs. Every result is compared byte for byte with one uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

import aelab.checkpoint
import aelab.dense_step
import aelab.engine
import aelab.files
import aelab.models
import aelab.training
from aelab.checkpoint import load_checkpoint, save_checkpoint
from aelab.cli import main
from aelab.errors import RunError
from helpers_reliability import (
    interrupt_after_steps,
    kill_hard,
    message_lines,
    metric_epochs,
    run_aelab,
    start_aelab,
    wait_for_new_versions,
    write_small_idx_dir,
)

GUARD = re.compile(r"non-finite|became (nan|inf)", re.I)


def train_args(data_dir: Path, out: Path, *extra: str, epochs: int = 3,
               checkpoint_minutes: str = "0.0005") -> list[str]:
    """47 batches of 32 per epoch; --checkpoint-minutes 0.0005 checkpoints every 30 ms inside epochs.
    On the CPU, where aelab promises bit-for-bit resume."""
    return ["train", "--data-dir", str(data_dir), "--out", str(out), "--epochs", str(epochs),
            "--seed", "0", "--quiet", "--checkpoint-minutes", checkpoint_minutes,
            "--batch-size", "32", "--latent-dim", "8", "--device", "cpu", *extra]


def resume_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--out", str(out), "--resume", "--quiet", *extra]


def assert_finite_checkpoint(run_dir: Path) -> dict:
    tensors, state = load_checkpoint(run_dir / "checkpoint.safetensors")
    for name, t in tensors.items():
        if t.is_floating_point():
            assert torch.isfinite(t).all(), f"{name} in the checkpoint is not finite"
    return state


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = message_lines(stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    return lines[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_small_idx_dir(tmp_path_factory.mktemp("idx") / "mnist-1500")


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory) -> Path:
    """One run of 3 epochs, never interrupted: the reference every other run must equal."""
    out = tmp_path_factory.mktemp("base") / "run"
    done = run_aelab(train_args(data_dir, out))
    assert done.returncode == 0, done.stderr
    return out


def assert_same_as(run_dir: Path, reference: Path) -> None:
    """model.safetensors byte-identical; metrics.jsonl identical except wall-clock seconds."""
    assert (run_dir / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert metric_epochs(run_dir) == [1, 2, 3]

    def records(d: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert records(run_dir) == records(reference)


# ---------------------------------------------------------------- SIGKILL at any moment

# Exact points (the process kills itself; positions count optimizer steps of the whole run, 47
# per epoch, 141 in all) alternate with SIGKILLs from outside at random moments.
KILLS = ["kill-after-step:10", "random", "kill-in-checkpoint:25", "kill-after-metrics:1", "random",
         "kill-after-checkpoint:60", "random", "kill-before-weights:1"]
PACE = "pace:8"  # >= 8 ms per step, so an outside kill lands within ~20 steps on any machine


@pytest.mark.slow
def test_sigkill_at_many_points_then_resume_is_byte_identical(data_dir, uninterrupted, tmp_path):
    out, rng = tmp_path / "run", random.Random(6)
    kill_points: list[str] = []
    for fault in KILLS:
        has_checkpoint = (out / "checkpoint.safetensors").exists()
        args = resume_args(out) if has_checkpoint else train_args(data_dir, out, "--force")
        if fault == "random":
            proc = start_aelab(args, fault=PACE)
            wait_for_new_versions(proc, out / "checkpoint.safetensors", rng.randint(1, 3))
            if proc.poll() is None:
                try:
                    proc.wait(timeout=rng.uniform(0, 0.04))
                except subprocess.TimeoutExpired:
                    pass
            rc, err = kill_hard(proc)
            assert rc in (-signal.SIGKILL, 0), err
            fault = "random" if rc else "random (finished first)"
        else:
            done = run_aelab(args, fault=fault)
            rc, err = done.returncode, done.stderr
            assert rc == -signal.SIGKILL, f"{fault} did not kill the process: {err}"
        assert "Traceback" not in err, err
        # after every kill: the checkpoint on disk is complete, metrics never repeat an epoch
        epochs = metric_epochs(out)
        assert epochs == list(range(1, len(epochs) + 1)), epochs
        where = "no checkpoint yet"
        if (out / "checkpoint.safetensors").exists():
            state = assert_finite_checkpoint(out)
            where = (f"epoch {state['epoch'] + 1} step {state['epoch_step']}" if state["epoch_step"]
                     else f"end of epoch {state['epoch']}")
        torn = ", torn temp file beside it" if (out / ".checkpoint.safetensors.tmp").exists() else ""
        kill_points.append(f"{fault}: last checkpoint at {where}{torn}; metrics {epochs}")
    print("\nkill points:\n  " + "\n  ".join(kill_points))
    done = run_aelab(resume_args(out))
    assert done.returncode == 0, done.stderr
    assert_same_as(out, uninterrupted)
    assert len(kill_points) == len(KILLS)
    assert sum(" step " in p for p in kill_points) >= 4, kill_points  # mid-epoch
    assert any("torn temp file" in p for p in kill_points), kill_points


def test_sigint_saves_a_checkpoint_and_says_how_to_resume(data_dir, uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = start_aelab(train_args(data_dir, out), fault=PACE)  # Ctrl-C lands in epoch 1
    assert wait_for_new_versions(proc, out / "checkpoint.safetensors", 2) == 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = one_line(err)
    assert f"resume with: aelab train --out {out} --resume" in line
    state = assert_finite_checkpoint(out)
    assert state["epoch_step"] > 0  # written at the moment of Ctrl-C, inside an epoch
    done = run_aelab(resume_args(out))
    assert done.returncode == 0, done.stderr
    assert_same_as(out, uninterrupted)


def test_sigint_at_the_last_batch_of_an_epoch_still_saves_it(data_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C during step 47 of 47 of epoch 2: the checkpoint must hold epoch 2, as it says."""
    interrupt_after_steps(monkeypatch, 94)  # the last batch of epoch 2
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, checkpoint_minutes="10")) == 130
    assert "resume with" in one_line(capsys.readouterr().err)
    assert assert_finite_checkpoint(out)["epoch"] == 2


# ---------------------------------------------------------------- run-folder safety


def test_a_second_process_cannot_train_into_a_busy_folder(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    first = start_aelab(train_args(data_dir, out, epochs=40))
    try:
        assert wait_for_new_versions(first, out / "checkpoint.safetensors", 1) == 1
        before = (out / "config.json").read_bytes()
        attempts = [resume_args(out), train_args(data_dir, out, "--force"), train_args(data_dir, out)]
        for args in attempts:
            assert main(args) == 1
            line = one_line(capsys.readouterr().err)
            assert line == f"aelab: error: another process (pid {first.pid}) is training into {out}"
        # --force did not delete the running process's files
        assert (out / "config.json").read_bytes() == before
        assert_finite_checkpoint(out)
        assert first.poll() is None, "the first process was disturbed"
    finally:
        kill_hard(first)
    # the kernel dropped the lock with the killed process: resuming works at once
    done = assert_finite_checkpoint(out)["epoch"]
    assert main(resume_args(out, "--epochs", str(done + 1))) == 0
    assert metric_epochs(out) == list(range(1, done + 2))


def test_refuses_to_write_into_an_existing_run(uninterrupted, data_dir, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(uninterrupted, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(train_args(data_dir, out)) == 1
    line = one_line(capsys.readouterr().err)
    assert line == (f"aelab: error: {out} already holds a run; continue it with --resume (resume=True "
                    f"in Python) or overwrite it with --force (force=True)")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(train_args(data_dir, not_a_folder)) == 1
    assert "exists and is not a folder" in one_line(capsys.readouterr().err)


def test_full_disk_in_the_kernel_keeps_the_last_checkpoint(data_dir, uninterrupted, tmp_path):
    """After epoch 1's checkpoint the process may write files of half a checkpoint at most (EFBIG)."""
    out = tmp_path / "run"
    limit = (uninterrupted / "checkpoint.safetensors").stat().st_size // 2
    assert limit > 2 * (uninterrupted / "figures" / "epoch_001.png").stat().st_size
    done = run_aelab(train_args(data_dir, out, checkpoint_minutes="10"),
                     fault=f"fsize-after-checkpoint:47:{limit}")  # epoch 1 ends at step 47
    assert done.returncode == 1, done.stderr
    line = one_line(done.stderr)
    assert line == (f"aelab: error: cannot write {out}/checkpoint.safetensors: File too large; "
                    f"the previous checkpoint is unchanged")
    assert assert_finite_checkpoint(out)["epoch"] == 1
    assert not (out / ".checkpoint.safetensors.tmp").exists()
    assert (out / "figures" / "epoch_001.png").exists() and (out / "figures" / "loss.png").exists()
    # with room again, resume finishes the run
    assert main(resume_args(out)) == 0
    assert metric_epochs(out) == [1, 2, 3]


@pytest.mark.parametrize("failure", ["open", "fsync", "replace"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_save_checkpoint_failure_leaves_the_old_one(tmp_path, monkeypatch, failure, code):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, {"epoch": 1})
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    target = {"open": (os, "open"), "fsync": (os, "fsync"), "replace": (os, "replace")}
    with monkeypatch.context() as m:
        m.setattr(*target[failure], fail, raising=False)
        with pytest.raises(RunError, match=f"cannot write {path}: {os.strerror(code)}; the previous "
                                           "checkpoint is unchanged"):
            save_checkpoint(path, {"w": torch.zeros(3)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert load_checkpoint(path)[1] == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]


def test_read_only_checkpoint_during_training_is_one_line(data_dir, tmp_path, monkeypatch, capsys):
    """The checkpoint write of epoch 2 fails read-only: one line, epoch 1's checkpoint intact."""
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, epochs=1, checkpoint_minutes="10")) == 0
    capsys.readouterr()
    real_open = os.open  # what aelab.files opens its temp files with

    def read_only_for_checkpoints(file, *args, **kwargs):
        if str(file).endswith(".checkpoint.safetensors.tmp"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only_for_checkpoints)
    assert main(resume_args(out, "--epochs", "2")) == 1
    line = one_line(capsys.readouterr().err)
    assert line == (f"aelab: error: cannot write {out}/checkpoint.safetensors: Read-only file system; "
                    f"the previous checkpoint is unchanged")
    assert assert_finite_checkpoint(out)["epoch"] == 1


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real tmpfs mounted at tmp_path/fs (root only); skipped where mounting is not allowed."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()

    def mount(*options: str) -> None:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs",
                                 str(mount_point)], capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")

    def remount(*options: str) -> None:
        subprocess.run(["mount", "-o", ",".join(("remount", *options)), str(mount_point)], check=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    yield mount_point, mount, remount
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_real_full_and_read_only_disk(data_dir, uninterrupted, tiny_tmpfs, capsys):
    """A tmpfs with room for one checkpoint and a half, then the same disk read-only."""
    mount_point, mount, remount = tiny_tmpfs
    checkpoint = (uninterrupted / "checkpoint.safetensors").stat().st_size
    figures = sum(p.stat().st_size for p in (uninterrupted / "figures").glob("epoch_00[12].png"))
    mount(f"size={checkpoint * 3 // 2 + figures + 64 * 1024}")
    out = mount_point / "run"
    assert main(train_args(data_dir, out, checkpoint_minutes="10")) == 1
    assert one_line(capsys.readouterr().err) == (
        f"aelab: error: cannot write {out}/checkpoint.safetensors: No space left on device; "
        f"the previous checkpoint is unchanged")
    assert assert_finite_checkpoint(out)["epoch"] == 1
    remount("ro")
    assert main(resume_args(out)) == 1
    assert one_line(capsys.readouterr().err) == f"aelab: error: cannot lock {out}: Read-only file system"
    assert assert_finite_checkpoint(out)["epoch"] == 1
    remount("rw", "size=64m")
    assert main(resume_args(out)) == 0
    capsys.readouterr()
    assert metric_epochs(out) == [1, 2, 3]


# ---------------------------------------------------------------- guarded numerics


@pytest.mark.parametrize("seed", [0, 1])
def test_tutorial_first_try_trains_or_stops_with_the_guard(data_dir, tmp_path, capsys, seed):
    """The tutorial's lr 0.1, no final ReLU: it trains, or it stops with the guard's line."""
    out = tmp_path / "run"
    rc = main(["train", "--preset", "seed-1st-try", "--epochs", "2", "--seed", str(seed),
               "--data-dir", str(data_dir), "--out", str(out), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == 0:
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1, 2]
        assert all(torch.isfinite(torch.tensor(r["valid_loss"])) for r in records)
        from aelab.rundir import read_weights

        assert all(torch.isfinite(t).all() for t in read_weights(out / "model.safetensors").values())
    else:
        line = one_line(err)
        assert rc == 1 and GUARD.search(line) and "lower --lr" in line, line
        assert not (out / "model.safetensors").exists()
    assert_finite_checkpoint(out)


def nan_loss_at(monkeypatch, training_call: int, kind: str = "loss") -> None:
    """Make the model's training loss NaN (kind="loss") or its gradient inf (kind="grad") at one call."""
    real_loss = aelab.models.Autoencoder.loss
    calls = [0]

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("inf")

    def loss(self, x):
        value, parts = real_loss(self, x)
        if self.training:
            calls[0] += 1
            if calls[0] == training_call:
                value = value * float("nan") if kind == "loss" else InfGrad.apply(value)
        return value, parts
    monkeypatch.setattr(aelab.models.Autoencoder, "loss", loss)

    # the CPU default for this model, the hand-written step: the same faults, inside the step
    # (it checks and updates each layer as its gradients come), on the first layer's gradient
    step_class = aelab.dense_step.DenseStep
    real_prepare, real_mse, real_grads = step_class.prepare, step_class.mse_and_grad, step_class.weight_grads

    def prepare(self, x):
        calls[0] += 1
        return real_prepare(self, x)

    def mse_and_grad(x_hat, x, diff):
        value, grad = real_mse(x_hat, x, diff)
        return (value * float("nan") if calls[0] == training_call and kind == "loss" else value), grad

    def weight_grads(self, lin, dz, inputs):
        real_grads(self, lin, dz, inputs)
        if calls[0] == training_call and kind == "grad" and lin is self.layers[0][0]:
            lin.weight.grad.fill_(float("inf"))
    monkeypatch.setattr(step_class, "prepare", prepare)
    monkeypatch.setattr(step_class, "mse_and_grad", staticmethod(mse_and_grad))
    monkeypatch.setattr(step_class, "weight_grads", weight_grads)

def test_nan_loss_stops_at_once_and_keeps_epoch_1(data_dir, tmp_path, monkeypatch, capsys):
    nan_loss_at(monkeypatch, 47 + 3)  # epoch 2, step 3
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, checkpoint_minutes="10")) == 1
    line = one_line(capsys.readouterr().err)
    assert re.fullmatch(r"aelab: error: loss became nan at epoch 2, step 3; "
                        r".*try a lower --lr \(now 0\.001\)", line), line
    assert assert_finite_checkpoint(out)["epoch"] == 1
    assert metric_epochs(out) == [1]
    assert {"epoch_001.png", "loss.png"} <= {p.name for p in (out / "figures").iterdir()}
    assert not (out / "model.safetensors").exists()


def test_inf_gradient_with_finite_loss_never_reaches_a_checkpoint(data_dir, tmp_path, monkeypatch, capsys):
    """The loss at step 5 is finite but its gradient is inf, so Adam writes NaN into the weights;
    a checkpoint is due right after (every step): it must not be written."""
    nan_loss_at(monkeypatch, 5, kind="grad")
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, checkpoint_minutes="0.000001")) == 1
    line = one_line(capsys.readouterr().err)
    assert "epoch 1, step 5" in line and GUARD.search(line) and "lower --lr" in line, line
    assert "a gradient became non-finite" in line, line  # caught before the step, not after it
    state = assert_finite_checkpoint(out)
    assert (state["epoch"], state["epoch_step"]) == (0, 4)


def test_divergence_before_any_checkpoint_still_leaves_a_valid_one(data_dir, tmp_path, monkeypatch, capsys):
    nan_loss_at(monkeypatch, 2)
    out = tmp_path / "run"
    assert main(train_args(data_dir, out, checkpoint_minutes="10")) == 1
    assert "lower --lr" in one_line(capsys.readouterr().err)
    assert_finite_checkpoint(out)


# ---------------------------------------------------------------- resuming on changed data


def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path, capsys):
    data = write_small_idx_dir(tmp_path / "data", n_train=600, n_test=200)
    out = tmp_path / "run"
    assert main(train_args(data, out, epochs=2, checkpoint_minutes="10")) == 0
    state = assert_finite_checkpoint(out)
    # a mid-epoch checkpoint whose permutation covers the 600 images it was written for
    tensors, _ = load_checkpoint(out / "checkpoint.safetensors")
    tensors["epoch.perm"] = torch.randperm(600)
    tensors["epoch.sums"] = torch.zeros(3, dtype=torch.float64)
    save_checkpoint(out / "checkpoint.safetensors", tensors, {**state, "epoch": 1, "epoch_step": 5,
                                                             "metrics": state["metrics"][:1]})
    write_small_idx_dir(data, n_train=300, n_test=200)  # someone replaced the files
    capsys.readouterr()
    assert main(resume_args(out)) == 1
    assert "data" in one_line(capsys.readouterr().err)


def test_resume_finds_moved_data_with_data_dir_and_ends_identical(data_dir, uninterrupted, tmp_path):
    moved = tmp_path / "moved-data"
    shutil.copytree(data_dir, moved)
    out = tmp_path / "run"
    assert main(train_args(moved, out, epochs=2)) == 0
    shutil.rmtree(moved)
    shutil.copytree(data_dir, tmp_path / "found-again")
    assert main(resume_args(out, "--epochs", "3", "--data-dir", str(tmp_path / "found-again"))) == 0
    assert_same_as(out, uninterrupted)


def test_ctrl_c_without_out_names_the_real_run_folder(data_dir, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise aelab.engine.Interrupted("interrupted in epoch 1 at step 3; checkpoint saved")
    monkeypatch.setattr(aelab.training, "fit", interrupted)
    monkeypatch.chdir(tmp_path)
    args = train_args(data_dir, Path("unused"))
    del args[args.index("--out"):args.index("--out") + 2]
    assert main(args) == 130
    line = one_line(capsys.readouterr().err)
    folder = re.search(r"resume with: aelab train --out (\S+) --resume", line).group(1)
    assert folder.startswith("runs/seed-") and (tmp_path / folder / "checkpoint.safetensors").is_file()


def test_a_relative_data_dir_works_from_any_folder_later(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(data_dir.parent)
    out = tmp_path / "run"
    assert main(train_args(Path(data_dir.name), out, epochs=1)) == 0
    monkeypatch.chdir(tmp_path)
    saved = json.loads((out / "config.json").read_text())["config"]["data"]["data_dir"]
    assert saved == str(data_dir.resolve())
    sample = ["sample", str(out), "--sampler", "gaussian", "--n", "4", "--out", str(tmp_path / "s.png")]
    assert main(sample) == 0
