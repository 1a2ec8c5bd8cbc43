"""`--threads auto|N` and `--matmul auto|NAME`: auto measures and records its choice; a rerun with
that setting and a resume give byte-identical weights; both training steps (hand-written and
autograd) run on the count.

No timings are asserted: what auto chooses depends on the machine and its load. conftest.py caps
auto at OMP_NUM_THREADS=1 and AELAB_MATMUL=torch for every other test; the tests here lift the
caps where they test auto.
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
from aelab.errors import AelabError
from aelab.matmul import available_backends
from aelab.models import Autoencoder, DenseVAE
from aelab.optim import make_optimizer
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
    monkeypatch.delenv("AELAB_MATMUL")
    lines: list[str] = []
    auto = _train(tmp_path / "auto", data_dir, lines)
    saved = _saved(auto)
    chosen = saved["config"]["train"]["threads_chosen"]
    backend = saved["config"]["train"]["matmul_chosen"]
    assert saved["config"]["train"]["threads"] == saved["config"]["train"]["matmul"] == "auto"
    assert saved["threads"]["requested"] == "auto" and saved["threads"]["chosen"] == chosen
    assert saved["threads"]["matmul"] == backend
    counts = threads.candidates(threads.available_cores())
    backends = available_backends()
    assert chosen in counts and backend in backends
    said = [line for line in lines if line.startswith("aelab: threads: auto")]
    measured = len(counts) * len(backends) > 1
    assert len(said) == measured, lines
    if measured:  # every setting, each a positive time, and one line says so
        step_ms = saved["threads"]["step_ms"]
        assert sorted(step_ms) == sorted(backends)
        assert all(sorted(map(int, step_ms[b])) == counts for b in backends)
        assert all(ms > 0 for b in backends for ms in step_ms[b].values())
        assert f"auto chose {threads.describe((chosen, backend))} " in said[0]
        assert "ms per training step" in said[0]
    # the measurement ran on a copy, on a forked RNG: `--threads N --matmul M` is the same run
    explicit = _train(tmp_path / "explicit", data_dir, threads=chosen, matmul=backend)
    assert _saved(explicit)["config"]["train"]["threads_chosen"] == chosen
    assert _saved(explicit)["config"]["train"]["matmul_chosen"] == backend
    assert (auto / "model.safetensors").read_bytes() == (explicit / "model.safetensors").read_bytes()
    assert (auto / "checkpoint.safetensors").is_file()


def _most(step_ms):
    """The setting with the most threads, oneDNN where this build has it (not what auto picks)."""
    return max(step_ms, key=lambda s: (s[0], s[1] == "onednn"))


def test_resume_reuses_the_recorded_setting_byte_identically(tmp_path, data_dir, monkeypatch):
    """The split run measures with 2 cores and every backend allowed and picks the most threads and
    oneDNN; it resumes with the caps at 1 and torch and must still train on the recorded setting,
    without measuring again."""
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("AELAB_MATMUL")
    monkeypatch.setattr(threads, "choose", _most)
    split = _train(tmp_path / "split", data_dir)
    saved = _saved(split)["config"]["train"]
    chosen, backend = saved["threads_chosen"], saved["matmul_chosen"]
    assert chosen == threads.thread_limit() == threads.available_cores()
    assert backend == available_backends()[-1]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("AELAB_MATMUL", "torch")
    lines: list[str] = []
    _train(split, data_dir, lines, resume=True, epochs=2)
    assert not any("auto" in line for line in lines), lines
    assert _saved(split)["config"]["train"]["threads_chosen"] == chosen
    assert _saved(split)["config"]["train"]["matmul_chosen"] == backend
    whole = _train(tmp_path / "whole", data_dir, epochs=2, threads=chosen, matmul=backend)
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
    for given in ("auto", "torch"):  # conftest's AELAB_MATMUL=torch: auto chose torch
        assert main(argv + ["--resume", "--matmul", given]) == 0
    assert main(argv + ["--resume", "--matmul", "onednn"]) == 1
    assert "--matmul onednn (the run has auto, which chose torch) cannot change" in capsys.readouterr().err
    for flag, bad in [("--threads", "0"), ("--threads", "many"), ("--threads", "1.5"),
                      ("--threads", "100000"), ("--matmul", "mkl"), ("--matmul", "")]:
        with pytest.raises(SystemExit) as e:
            main(argv[:-1] + [flag, bad])
        assert e.value.code == 2


def test_a_backend_other_than_torch_is_refused_where_it_cannot_run(tmp_path, data_dir, capsys):
    """The VAE trains through autograd: --matmul onednn is one line, and nothing is trained."""
    argv = ["train", "--preset", "vae", "--data-dir", str(data_dir), "--out", str(tmp_path / "vae"),
            "--epochs", "1", "--device", "cpu", "--quiet", "--matmul", "onednn"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--matmul onednn applies to the hand-written step" in err
    assert not (tmp_path / "vae" / "model.safetensors").exists()
    assert main(argv[:-1] + ["auto"]) == 0  # auto: torch's products, recorded
    assert _saved(tmp_path / "vae")["config"]["train"]["matmul_chosen"] == "torch"


@pytest.mark.parametrize("train_section, word", [
    ({"threads": 0}, "threads=0"), ({"threads": "many"}, "threads='many'"),
    ({"threads": True}, "threads=True"),
    ({"threads_chosen": 0}, "threads_chosen=0"), ({"threads": 2, "threads_chosen": 3}, "differs"),
    ({"threads": 4096}, "threads=4096"), ({"matmul": "mkl"}, "matmul='mkl'"), ({"matmul": 1}, "matmul=1"),
    ({"matmul_chosen": "auto"}, "matmul_chosen='auto'"),
    ({"matmul": "torch", "matmul_chosen": "onednn"}, "differs")])
def test_config_refuses_bad_thread_counts_and_backends(train_section, word):
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
    del d["train"]["matmul"], d["train"]["matmul_chosen"]  # and before matmul: torch's products
    cfg = config_from_dict(d)
    assert cfg.train.matmul == threads.matmul_of(cfg) == "torch"


def test_candidates_and_choice():
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [1, 2]
    assert threads.candidates(6) == [1, 2, 4, 6]
    assert threads.candidates(16) == [1, 2, 4, 8, 16]
    t, o = "torch", "onednn"
    assert threads.choose({(1, t): 10.0, (2, t): 9.8}) == (1, t)     # within 3%: fewer threads
    assert threads.choose({(1, t): 10.0, (2, t): 6.0, (4, t): 5.9}) == (2, t)
    assert threads.choose({(1, t): 5.0, (2, t): 9.0}) == (1, t)
    assert threads.choose({(1, t): 5.0, (1, o): 4.9, (2, o): 4.0}) == (2, o)
    assert threads.choose({(1, t): 5.0, (1, o): 4.9}) == (1, t)      # within 3%: torch's own
    assert threads.choose({(2, t): 5.0, (1, o): 5.1}) == (1, o)      # fewer threads first


def test_matmul_limit_honours_aelab_matmul(monkeypatch):
    monkeypatch.setenv("AELAB_MATMUL", "torch")
    assert threads.matmul_limit() == ["torch"]
    monkeypatch.setenv("AELAB_MATMUL", " onednn , torch ")
    assert threads.matmul_limit() == available_backends()  # registry order, only what runs here
    monkeypatch.delenv("AELAB_MATMUL")
    assert threads.matmul_limit() == available_backends()
    monkeypatch.setenv("AELAB_MATMUL", "torch,blas")
    with pytest.raises(AelabError, match="AELAB_MATMUL='torch,blas': unknown matmul backend 'blas'"):
        threads.matmul_limit()


def test_thread_limit_honours_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.thread_limit() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.thread_limit() == threads.available_cores()


class _FakeProbe:
    def __init__(self) -> None:
        self.calls = 0

    def backends(self):
        return ["torch", "onednn"]

    def measure(self, settings, rounds=3, budget_s=1.5):
        self.calls += 1
        assert sorted(settings) == [(1, "onednn"), (1, "torch"), (2, "onednn"), (2, "torch")]
        return {(1, "torch"): 5.0, (1, "onednn"): 7.0, (2, "torch"): 9.0, (2, "onednn"): 8.0}


def test_watch_reports_a_sharp_slowdown_once_and_keeps_the_setting():
    probe, lines = _FakeProbe(), []
    watch = threads.Watch(probe, chosen=(2, "onednn"), limit=2, log=lines.append)
    said = [watch.epoch_done({"epoch": e, "seconds": s}) for e, s in enumerate([5, 5.2, 9, 9.5, 5.1, 8], 1)]
    assert [line is not None for line in said] == [False, False, True, False, False, True]
    assert probe.calls == 2 and len(lines) == 2
    assert "warning: epoch 3 took 9.0 s, 1.8x the fastest" in lines[0]
    assert ("1 thread, torch matmul would be faster now; this run keeps 2 threads, onednn matmul"
            in lines[0]) and "--threads 1 --matmul torch" in lines[0]


def test_watch_ignores_the_jitter_of_very_short_epochs():
    """Tiny runs (tests, smoke runs): 0.06 -> 0.1 s is 1.6x, but no slowdown anyone should hear of."""
    probe, lines = _FakeProbe(), []
    watch = threads.Watch(probe, chosen=(2, "onednn"), limit=2, log=lines.append)
    said = [watch.epoch_done({"epoch": e, "seconds": s}) for e, s in enumerate([0.06, 0.1, 0.4], 1)]
    assert said == [None] * 3
    assert probe.calls == 0 and lines == []


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
    original = DenseStep.prepare  # the start of every hand-written step
    monkeypatch.setattr(DenseStep, "prepare", lambda self, x: (seen.append(torch.get_num_threads()),
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
