"""`--threads auto|N`: auto measures and records its choice; a rerun with that N and a resume give
byte-identical weights; both training steps (hand-written and autograd) run on the count.

No timings are asserted: what auto chooses depends on the machine and its load. conftest.py caps
auto at OMP_NUM_THREADS=1 for every other test; the tests here lift the cap where they test auto.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from aelab import threads
from aelab.cli import main
from aelab.config import config_from_dict
from aelab.dense_step import DenseStep
from aelab.engine import make_optimizer
from aelab.errors import AelabError
from aelab.models import Autoencoder, DenseVAE
from aelab.presets import resolve_config
from aelab.training import train
from helpers_reliability import write_small_idx_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """2,000 real MNIST training and 500 test images as IDX files."""
    return write_small_idx_dir(tmp_path_factory.mktemp("threads") / "data", n_train=2000, n_test=500)


def _train(out: Path, data_dir: Path, lines: list[str] | None = None, *, resume: bool = False,
           **overrides) -> Path:
    cfg = resolve_config("seed", {"epochs": 1, "seed": 3, "device": "cpu", "data_dir": str(data_dir),
                                  **overrides})
    log = lines.append if lines is not None else (lambda line: None)
    train(cfg, out, resume=resume, quiet=lines is None, log=log)
    return out


def _saved(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_auto_measures_records_its_choice_and_its_count_reproduces_the_run(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")
    lines: list[str] = []
    auto = _train(tmp_path / "auto", data_dir, lines)
    saved = _saved(auto)
    chosen = saved["config"]["train"]["threads_chosen"]
    assert saved["config"]["train"]["threads"] == "auto"  # the request stays visible
    assert saved["threads"]["requested"] == "auto" and saved["threads"]["chosen"] == chosen
    counts = threads.candidates(threads.available_cores())
    assert chosen in counts
    said = [line for line in lines if line.startswith("aelab: threads: auto")]
    assert len(said) == (len(counts) > 1), lines
    if len(counts) > 1:  # measured: every candidate, each a positive time, and one line says so
        assert sorted(map(int, saved["threads"]["step_ms"])) == counts
        assert all(ms > 0 for ms in saved["threads"]["step_ms"].values())
        assert f"auto chose {chosen} " in said[0] and "ms per training step" in said[0]
    # the measurement ran on a copy, on a forked RNG: `--threads N` with its N is the same run
    explicit = _train(tmp_path / "explicit", data_dir, threads=chosen)
    assert _saved(explicit)["config"]["train"]["threads_chosen"] == chosen
    assert (auto / "model.safetensors").read_bytes() == (explicit / "model.safetensors").read_bytes()
    assert (auto / "checkpoint.safetensors").is_file()


def test_resume_reuses_the_recorded_count_byte_identically(tmp_path, data_dir, monkeypatch):
    """The split run measures with 2 cores allowed and picks the most threads; it resumes with the
    cap at 1 and must still train on the recorded count, without measuring again."""
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "choose", lambda step_ms: max(step_ms))
    split = _train(tmp_path / "split", data_dir)
    chosen = _saved(split)["config"]["train"]["threads_chosen"]
    assert chosen == threads.thread_limit() == threads.available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines: list[str] = []
    _train(split, data_dir, lines, resume=True, epochs=2)
    assert not any("auto" in line for line in lines), lines
    assert _saved(split)["config"]["train"]["threads_chosen"] == chosen
    whole = _train(tmp_path / "whole", data_dir, epochs=2, threads=chosen)
    assert (split / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    epochs = [json.loads(line)["epoch"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_cli_threads_flag_and_resume_rules(tmp_path, data_dir, capsys):
    argv = ["train", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--latent-dim", "4", "--batch-size", "100", "--device", "cpu", "--quiet"]
    assert main(argv) == 0  # auto, capped at 1 by conftest: chooses 1 without measuring
    assert _saved(tmp_path / "run")["config"]["train"]["threads_chosen"] == 1
    capsys.readouterr()
    # on resume, the run's own request (auto) and what auto chose (1) are the run's own flags
    for given in ("auto", "1"):
        assert main(argv + ["--resume", "--threads", given]) == 0
    assert main(argv + ["--resume", "--threads", "2"]) == 1
    err = capsys.readouterr().err
    assert "--threads 2 (the run has auto, which chose 1) cannot change" in err
    for bad in ("0", "many", "1.5", "100000"):
        with pytest.raises(SystemExit) as e:
            main(argv[:-1] + ["--threads", bad])
        assert e.value.code == 2


@pytest.mark.parametrize("train_section, word", [
    ({"threads": 0}, "threads=0"), ({"threads": "many"}, "threads='many'"),
    ({"threads": True}, "threads=True"),
    ({"threads_chosen": 0}, "threads_chosen=0"), ({"threads": 2, "threads_chosen": 3}, "differs"),
    ({"threads": 4096}, "threads=4096")])
def test_config_refuses_bad_thread_counts(train_section, word):
    d = resolve_config("seed").to_dict()
    d["train"].update(train_section)
    with pytest.raises(AelabError, match=word):
        config_from_dict(d)


def test_a_run_from_before_threads_resumes_on_one_thread():
    d = resolve_config("seed").to_dict()
    del d["train"]["threads"], d["train"]["threads_chosen"]
    cfg = config_from_dict(d)
    assert cfg.train.threads == "auto" and cfg.train.threads_chosen is None
    from aelab.engine import cpu_threads
    assert cpu_threads(cfg) == int(os.environ["OMP_NUM_THREADS"]) == 1


def test_candidates_and_choice():
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [1, 2]
    assert threads.candidates(6) == [1, 2, 4, 6]
    assert threads.candidates(16) == [1, 2, 4, 8, 16]
    assert threads.choose({1: 10.0, 2: 9.8}) == 1     # within 3%: fewer threads
    assert threads.choose({1: 10.0, 2: 6.0, 4: 5.9}) == 2
    assert threads.choose({1: 5.0, 2: 9.0}) == 1


def test_thread_limit_honours_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.thread_limit() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.thread_limit() == threads.available_cores()


class _FakeProbe:
    def __init__(self) -> None:
        self.calls = 0

    def measure(self, counts, rounds=3, budget_s=1.5):
        self.calls += 1
        return {1: 5.0, 2: 9.0}


def test_watch_reports_a_sharp_slowdown_once_and_keeps_the_count():
    probe, lines = _FakeProbe(), []
    watch = threads.Watch(probe, chosen=2, limit=2, log=lines.append)
    said = [watch.epoch_done({"epoch": e, "seconds": s}) for e, s in enumerate([5, 5.2, 9, 9.5, 5.1, 8], 1)]
    assert [line is not None for line in said] == [False, False, True, False, False, True]
    assert probe.calls == 2 and len(lines) == 2
    assert "warning: epoch 3 took 9.0 s, 1.8x the fastest" in lines[0]
    assert "1 would be faster now; this run keeps 2" in lines[0]


def _cpu_ticks() -> dict[str, int]:
    ticks = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[task.name] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def _threads_that_worked(step, n: int) -> int:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        step()  # the first steps allocate and start OpenMP's threads
        before = _cpu_ticks()
        for _ in range(20):
            step()
        after = _cpu_ticks()
    finally:
        torch.set_num_threads(old)
    return sum(after[t] - before.get(t, 0) >= 2 for t in after)


@pytest.mark.skipif(threads.available_cores() < 2 or not Path("/proc/self/task").is_dir(),
                    reason="needs 2 cores and Linux's per-thread CPU times")
@pytest.mark.parametrize("kind", ["hand-written", "autograd"])
def test_both_training_steps_run_on_the_thread_count(kind):
    torch.manual_seed(0)
    model = (Autoencoder() if kind == "hand-written" else DenseVAE()).train()
    optimizer = make_optimizer(model, 1e-3, torch.device("cpu"))
    x = torch.rand(256, 784)
    grads = DenseStep(model) if kind == "hand-written" else None

    def step() -> None:
        if grads is not None:
            grads(x)
        else:
            loss, _ = model.loss(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()

    assert _threads_that_worked(step, 1) == 1
    assert _threads_that_worked(step, 2) >= 2


def test_training_runs_each_step_at_the_chosen_count(tmp_path, data_dir, monkeypatch):
    """fit sets torch's count to the run's for the hand-written step (seed) and autograd (VAE)."""
    seen: list[int] = []
    original = DenseStep.__call__
    monkeypatch.setattr(DenseStep, "__call__", lambda self, x: (seen.append(torch.get_num_threads()),
                                                                original(self, x))[1])
    _train(tmp_path / "seed", data_dir, threads=2, latent_dim=8)
    assert seen and set(seen) == {2}
    seen.clear()
    original_loss = DenseVAE.loss
    monkeypatch.setattr(DenseVAE, "loss", lambda self, x: (seen.append(torch.get_num_threads()),
                                                           original_loss(self, x))[1])
    cfg = resolve_config("vae", {"epochs": 1, "device": "cpu", "data_dir": str(data_dir), "threads": 3,
                                 "latent_dim": 8})
    train(cfg, tmp_path / "vae", quiet=True, log=lambda line: None)
    assert seen and set(seen) == {3}  # every training step and the validation pass
