"""Hostile input: every command on damaged, forged or booby-trapped run folders, huge arguments,
symlinks out of the folder, and user folders that `--force` must not touch.

The contract (README, "Reliability"): a non-zero exit, at most three lines on stderr, no
traceback, nothing of the user's read, lost or leaked. Each case copies a real finished run
(2 epochs on real MNIST digits), damages one file, and runs the commands that read it in this
process (an escaping exception is what would become a traceback). Categories, not examples: a
new way to damage a file belongs in the table of its kind.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

from aelab.checkpoint import load_checkpoint, save_checkpoint
from aelab.cli import main
from aelab.presets import resolve_config
from aelab.training import train
from helpers_reliability import run_main, write_small_idx_dir

READERS = ["sample", "explain", "evaluate", "report", "export", "train"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """A finished run with a fitted gmm and a gaussian sampler, its data, and a scratch root."""
    root = tmp_path_factory.mktemp("hostile")
    data = write_small_idx_dir(root / "data", n_train=400, n_test=100)
    cfg = resolve_config("seed", {"epochs": 2, "latent_dim": 4, "batch_size": 50, "data_dir": str(data),
                                  "device": "cpu"})
    run = root / "run"
    train(cfg, run, quiet=True, log=lambda line: None)
    assert main(["sample", str(run), "--sampler", "gmm", "--n", "4", "--components", "3"]) == 0
    assert main(["sample", str(run), "--sampler", "gaussian", "--n", "4"]) == 0
    return {"run": run, "data": data, "root": root}


@pytest.fixture
def run(base, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(base["run"], copy, symlinks=True)
    return copy


def command(name: str, run_dir: Path, out: Path) -> list[str]:
    return {"train": ["train", "--out", str(run_dir), "--resume", "--epochs", "3", "--quiet"],
            "sample": ["sample", str(run_dir), "--sampler", "gmm", "--components", "3", "--n", "4",
                       "--out", str(out / "s.png")],
            "explain": ["explain", str(run_dir)],
            "evaluate": ["evaluate", str(run_dir), "--n", "10", "--samplers", "gmm", "--components", "3"],
            "report": ["report", str(run_dir)],
            "export": ["export", str(run_dir), "--onnx", str(out / "onnx")]}[name]


def aelab_process(argv: list[str]) -> subprocess.CompletedProcess:
    """`aelab ARGV` in a real process (where an escaping exception is a traceback on stderr), with
    a time limit: a FIFO opened for reading or writing would block forever."""
    return subprocess.run([sys.executable, "-m", "aelab", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "AELAB_MATMUL": "torch"})


def assert_refused(argv: list[str], capsys, *words: str) -> str:
    code, lines = run_main(argv, capsys)
    assert code != 0, (argv, lines)
    assert 1 <= len(lines) <= 3, lines
    for word in words:
        assert word in lines[-1], lines
    return lines[-1]


# ---------------------------------------------------------------- config.json, metrics.jsonl

def _edit_config(run: Path, change) -> None:
    saved = json.loads((run / "config.json").read_text())
    change(saved)
    (run / "config.json").write_text(json.dumps(saved))


CONFIG_DAMAGE = {
    "not JSON": lambda run: (run / "config.json").write_text("{not json"),
    "not UTF-8": lambda run: (run / "config.json").write_bytes(b"\xff\xfe{\x00"),
    "deeply nested": lambda run: (run / "config.json").write_text("[" * 100_000 + "]" * 100_000),
    "a list": lambda run: (run / "config.json").write_text("[1, 2]"),
    "config a string": lambda run: _edit_config(run, lambda s: s.update(config="seed")),
    "model a list": lambda run: _edit_config(run, lambda s: s["config"].update(model=[1])),
    "latent_dim text": lambda run: _edit_config(run, lambda s: s["config"]["model"].update(latent_dim="4")),
    "latent_dim huge": lambda run: _edit_config(run, lambda s: s["config"]["model"].update(latent_dim=10**9)),
    "width_dim huge": lambda run: _edit_config(run, lambda s: s["config"]["model"].update(width_dim=100_000)),
    "unknown model": lambda run: _edit_config(run, lambda s: s["config"]["model"].update(architecture="x")),
    "data_dir a number": lambda run: _edit_config(run, lambda s: s["config"]["data"].update(data_dir=5)),
    "data record a list": lambda run: _edit_config(run, lambda s: s.update(data=[])),
    "n_train text": lambda run: _edit_config(run, lambda s: s["data"].update(n_train="many")),
    "seed negative": lambda run: _edit_config(run, lambda s: s["config"]["train"].update(seed=-1)),
    "huge file": lambda run: (run / "config.json").write_text(" " * (17 << 20) + "{}"),
    "a 5000-digit number": lambda run: (run / "config.json").write_text(  # past Python's int limit
        (run / "config.json").read_text().replace('"latent_dim": ', '"latent_dim": ' + "9" * 5000, 1)),
    "symlink out": lambda run: _symlink(run / "config.json", "/etc/hostname"),
    "a fifo": lambda run: _fifo(run / "config.json"),
    "a folder": lambda run: _folder(run / "config.json"),
}

METRICS_DAMAGE = {
    "not JSON": "{epoch: 1}\n",
    "not UTF-8": b"\xff\xfe\n",
    "epoch text": '{"epoch": "1", "valid_mse": 0.1}\n',
    "value text": '{"epoch": 1, "valid_mse": "low"}\n',
    "NaN": '{"epoch": 1, "valid_mse": NaN}\n',
    "a 5000-digit number": '{"epoch": 1, "valid_mse": ' + "9" * 5000 + '}\n',
    "a list": "[1, 2]\n",
    "epochs out of order": '{"epoch": 2, "valid_mse": 0.1}\n',
    "deeply nested": "[" * 50_000 + "]" * 50_000 + "\n",
}


def _symlink(path: Path, target: str) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(target)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("damage", list(CONFIG_DAMAGE))
@pytest.mark.parametrize("name", READERS)
def test_damaged_config_is_one_line_for_every_command(run, tmp_path, capsys, damage, name):
    CONFIG_DAMAGE[damage](run)
    assert_refused(command(name, run, tmp_path), capsys, "config")


@pytest.mark.parametrize("damage", list(METRICS_DAMAGE))
@pytest.mark.parametrize("name", ["sample", "report", "export"])
def test_damaged_metrics_is_one_line(run, tmp_path, capsys, damage, name):
    text = METRICS_DAMAGE[damage]
    path = run / "metrics.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert_refused(command(name, run, tmp_path), capsys, "metrics.jsonl")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                          lambda children: st.lists(children, max_size=3)
                          | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=10),
       where=st.sampled_from(["model.latent_dim", "model.kind", "train.lr", "train.epochs", "data.dataset",
                              "model.output_activation", "train.batch_size", "preset"]))
def test_any_json_value_anywhere_in_the_config_is_refused_or_accepted_cleanly(base, tmp_path_factory, value,
                                                                             where):
    run = tmp_path_factory.mktemp("fuzz") / "run"
    shutil.copytree(base["run"], run)
    saved = json.loads((run / "config.json").read_text())
    *parents, key = where.split(".")
    node = saved["config"]
    for p in parents:
        node = node[p]
    node[key] = value
    (run / "config.json").write_text(json.dumps(saved))
    from aelab.errors import AelabError
    from aelab.rundir import RunDir

    try:
        RunDir(run).read_config()
    except AelabError:
        pass  # refused with aelab's own error: the CLI prints it as one line


@pytest.mark.parametrize("reconstruction", ['{"test_mse": NaN}', '[1]', '{"valid_mse": "low"}'])
def test_a_damaged_final_reconstruction_is_refused(run, reconstruction):
    from aelab.errors import RunError
    from aelab.records import check_final

    final = json.loads((run / "final.json").read_text())
    assert check_final(final, "final.json") == final  # the real one passes
    final["reconstruction"] = json.loads(reconstruction)
    with pytest.raises(RunError, match="reconstruction is not an object of numbers"):
        check_final(final, "final.json")


def test_a_perfect_reconstructions_infinite_psnr_is_not_damage():
    from aelab.errors import RunError
    from aelab.records import check_evaluation

    perfect = {"reconstruction": {"model": {"mse": 0.0, "psnr": float("inf"), "ssim": 1.0}}}
    assert check_evaluation(perfect, "evaluation.json") == perfect  # as evaluate writes it
    with pytest.raises(RunError, match="not an object of finite numbers"):
        check_evaluation({"reconstruction": {"model": {"mse": float("inf")}}}, "evaluation.json")


# ---------------------------------------------------------------- weights

def _weights(run: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _nan_weights(run: Path) -> None:
    w = _weights(run)
    w["decoder.0.0.weight"][0, 0] = float("nan")
    save_torch(w, str(run / "model.safetensors"))


def _inf_running_var(run: Path) -> None:
    w = _weights(run)
    w["encoder.0.1.running_var"][:] = float("inf")
    save_torch(w, str(run / "model.safetensors"))


def _wrong_shape(run: Path) -> None:
    w = _weights(run)
    w["decoder.0.0.weight"] = torch.zeros(3, 3)
    save_torch(w, str(run / "model.safetensors"))


def _dtype(run: Path, dtype: torch.dtype) -> None:
    w = _weights(run)
    w["decoder.0.0.weight"] = (w["decoder.0.0.weight"] * 100).to(dtype)
    save_torch(w, str(run / "model.safetensors"))


WEIGHTS_DAMAGE = {
    "truncated": lambda run: (run / "model.safetensors").write_bytes(
        (run / "model.safetensors").read_bytes()[:500]),
    "empty": lambda run: (run / "model.safetensors").write_bytes(b""),
    "NaN": _nan_weights,
    "inf running var": _inf_running_var,
    "wrong shape": _wrong_shape,
    "int32": lambda run: _dtype(run, torch.int32),
    "float64": lambda run: _dtype(run, torch.float64),
    "float16": lambda run: _dtype(run, torch.float16),
    "symlink to /dev/zero": lambda run: _symlink(run / "model.safetensors", "/dev/zero"),
    "huge header claim": lambda run: (run / "model.safetensors").write_bytes(
        struct.pack("<Q", 2**62) + b"{}"),
}


@pytest.mark.parametrize("damage", list(WEIGHTS_DAMAGE))
@pytest.mark.parametrize("name", ["sample", "explain", "evaluate", "export"])
def test_damaged_weights_never_give_a_result(run, tmp_path, capsys, damage, name):
    WEIGHTS_DAMAGE[damage](run)
    assert_refused(command(name, run, tmp_path), capsys, "model.safetensors")
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "onnx" / "decoder.onnx").exists()


def test_non_finite_weights_exit_non_zero_in_a_real_process(run, tmp_path):
    """No crash signal and no all-NaN array with exit 0: the segfault seen in evaluate."""
    _nan_weights(run)
    for name in ("evaluate", "sample"):
        argv = command(name, run, tmp_path) + (["--npy", str(tmp_path / "x.npy")] if name == "sample" else [])
        done = aelab_process(argv)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "x.npy").exists()


# ---------------------------------------------------------------- fitted samplers

def _sampler_arrays(run: Path, name: str = "gmm"):
    path = run / "samplers" / f"{name}.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        return path, f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def _forge(change, name: str = "gmm"):
    def apply(run: Path) -> None:
        path, meta, arrays = _sampler_arrays(run, name)
        change(arrays, meta)
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path), metadata=meta)
    return apply


def _many_components(arrays, meta):
    """A small file whose compact form claims 50,000 components: 50,000 x 4 x 4 float64 = 6 MB,
    but expanded to full covariances it asks for far more than aelab allows."""
    k, p = 50_000, arrays["pca_components_"].shape[0] if "pca_components_" in arrays else 0
    d = len(arrays["data_min_"])
    arrays["weights_"] = np.full(k, 1 / k)
    arrays["means_"] = np.zeros((k, d))
    if p:
        arrays["pca_covariances_"] = np.tile(np.eye(p), (k, 1, 1))
    else:
        arrays["covariances_"] = np.tile(np.eye(d), (k, 1, 1))


def _not_pd(arrays, meta):
    if "pca_covariances_" in arrays:
        arrays["pca_covariances_"][0] = -np.eye(arrays["pca_covariances_"].shape[1]) * 100
    else:
        arrays["covariances_"][0] = -np.eye(arrays["covariances_"].shape[1])


SAMPLER_DAMAGE = {
    "truncated": lambda run: (run / "samplers" / "gmm.safetensors").write_bytes(b"\x10\x00"),
    "wrong code size": _forge(lambda a, m: [a.update({k: a[k][..., :2] if a[k].ndim == 1 else a[k]})
                                            for k in ("data_min_", "data_max_")]),
    "weights not a distribution": _forge(lambda a, m: a.update(weights_=a["weights_"] * 3)),
    "negative weights": _forge(lambda a, m: a.update(weights_=a["weights_"] * np.array([-1, 1, 1]))),
    "NaN means": _forge(lambda a, m: a["means_"].__setitem__((0, 0), np.nan)),
    "integer means": _forge(lambda a, m: a.update(means_=a["means_"].astype(np.int64))),
    "not positive definite": _forge(_not_pd),
    "50,000 components": _forge(_many_components),
    "bad params": _forge(lambda a, m: m.update(params='{"n_components": "many"}')),
    "deep params": _forge(lambda a, m: m.update(params="[" * 50_000 + "]" * 50_000)),
    "gaussian not symmetric": _forge(lambda a, m: a["covariance_"].__setitem__((0, 1), 5.0), "gaussian"),
    "symlink out": lambda run: _symlink(run / "samplers" / "gmm.safetensors", "/etc/hostname"),
    "samplers folder symlink": lambda run: (shutil.rmtree(run / "samplers"),
                                            (run / "samplers").symlink_to(run.parent)),
}


@pytest.mark.parametrize("damage", list(SAMPLER_DAMAGE))
def test_forged_sampler_files_are_refused(run, tmp_path, capsys, damage):
    SAMPLER_DAMAGE[damage](run)
    sampler = "gaussian" if damage.startswith("gaussian") else "gmm"
    argv = ["sample", str(run), "--sampler", sampler, "--n", "4", "--out", str(tmp_path / "s.png")]
    if sampler == "gmm":
        argv += ["--components", "3"]
    assert_refused(argv, capsys)
    assert not (tmp_path / "s.png").exists()


# ---------------------------------------------------------------- report: what it embeds

REPORT_DAMAGE = {
    "figure symlink to /dev/zero": lambda run: _symlink(run / "figures" / "epoch_001.png", "/dev/zero"),
    "figure symlink out": lambda run: _symlink(run / "figures" / "loss.png", str(run.parent / "secret.png")),
    "figures folder symlink": lambda run: (shutil.rmtree(run / "figures"),
                                           (run / "figures").symlink_to("/etc")),
    "figure not a PNG": lambda run: (run / "figures" / "loss.png").write_text("hello"),
    "evaluation not JSON": lambda run: (run / "evaluation.json").write_text("{"),
    "evaluation deeply nested": lambda run: (run / "evaluation.json").write_text("[" * 90_000 + "]" * 90_000),
    "evaluation samples a list": lambda run: (run / "evaluation.json").write_text('{"samples": [1]}'),
    "evaluation score NaN": lambda run: (run / "evaluation.json").write_text(
        '{"reconstruction": {"model": {"mse": NaN}}}'),
    "evaluation score 1e999": lambda run: (run / "evaluation.json").write_text(
        '{"samples": {"sampler gmm": {"fid": 1e999}}}'),
    "final.json not JSON": lambda run: (run / "final.json").write_text("{"),
    "final.json reconstruction NaN": lambda run: (run / "final.json").write_text(
        (run / "final.json").read_text().replace('"test_mse": ', '"test_mse": NaN, "x": ', 1)),
    "evaluation score text": lambda run: (run / "evaluation.json").write_text(
        '{"samples": {"sampler gmm": {"fid": "<b>low</b>"}}}'),
    "explain not UTF-8": lambda run: ((run / "explain").mkdir(), (run / "explain" / "explain.md").write_bytes(
        b"# x\n\n\xff\xfe")),
    "explain image symlink": lambda run: ((run / "explain").mkdir(), (run / "explain" / "a.png").symlink_to(
        "/etc/hostname"), (run / "explain" / "explain.md").write_text("# x\n\n![a](a.png)\n")),
}


@pytest.mark.parametrize("damage", list(REPORT_DAMAGE))
def test_report_never_embeds_what_is_outside_or_broken(run, capsys, damage):
    (run.parent / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\nSECRET")
    REPORT_DAMAGE[damage](run)
    assert_refused(["report", str(run)], capsys)
    report = run / "report.html"
    assert not report.exists() or "U0VDUkVU" not in report.read_text()  # base64 of SECRET


def test_explain_markdown_cannot_name_a_file_outside_its_folder(run, capsys):
    (run / "explain").mkdir()
    (run.parent / "outside.png").write_bytes(b"\x89PNG\r\n\x1a\nOUTSIDE")
    (run / "explain" / "explain.md").write_text("# x\n\n![a](../../outside.png)\n")
    assert run_main(["report", str(run)], capsys)[0] == 0
    assert "T1VUU0lERQ" not in (run / "report.html").read_text()  # base64 of OUTSIDE


# ---------------------------------------------------------------- --force and user folders

def test_force_refuses_a_folder_aelab_did_not_write(base, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    files = {"config.json": "{}", "figures/plot.png": "x", "samples/a.png": "y", "report.html": "z",
             "notes.txt": "keep"}
    for name, text in files.items():
        (mine / name).parent.mkdir(parents=True, exist_ok=True)
        (mine / name).write_text(text)
    assert_refused(["train", "--data-dir", str(base["data"]), "--out", str(mine), "--force", "--quiet",
                    "--epochs", "1"], capsys, "did not write")
    assert {name: (mine / name).read_text() for name in files} == files


def test_force_on_an_aelab_run_removes_only_what_aelab_wrote(base, run, capsys):
    (run / "notes.txt").write_text("mine")
    (run / "figures" / "my_plot.png").write_text("mine")
    code, lines = run_main(["train", "--data-dir", str(base["data"]), "--out", str(run), "--force", "--quiet",
                            "--epochs", "1", "--latent-dim", "4", "--batch-size", "50"], capsys)
    assert code == 0, lines
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "figures" / "my_plot.png").read_text() == "mine"
    assert not (run / "samplers").exists()  # the old run's fitted samplers are gone
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # the new run's one epoch


def _replace_with_folder(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    path.mkdir()


UNWRITABLE = {
    "figures a symlink out": lambda run: (shutil.rmtree(run / "figures"),
                                          (run / "figures").symlink_to(run.parent)),
    "figures a file": lambda run: (shutil.rmtree(run / "figures"), (run / "figures").write_text("x")),
    "the marker a folder": lambda run: _replace_with_folder(run / ".aelab-run"),
    "the lock a folder": lambda run: _replace_with_folder(run / ".lock"),
    "the lock a symlink": lambda run: (run / ".lock").symlink_to(run.parent / "elsewhere"),
    "metrics.jsonl a folder": lambda run: _replace_with_folder(run / "metrics.jsonl"),
    "final.json a folder": lambda run: _replace_with_folder(run / "final.json"),
    "report.html a folder": lambda run: _replace_with_folder(run / "report.html"),
    "figures/loss.png a folder": lambda run: _replace_with_folder(run / "figures" / "loss.png"),
    "figures/epoch_009.png a folder": lambda run: _replace_with_folder(run / "figures" / "epoch_009.png"),
}


@pytest.mark.parametrize("damage", list(UNWRITABLE))
@pytest.mark.parametrize("flag", ["--force", "--resume"])
def test_a_folder_training_cannot_write_into_is_refused_before_anything_is_removed(base, run, capsys,
                                                                                    damage, flag):
    # --force used to delete the old run first and only then fail on figures/ or metrics.jsonl,
    # leaving no model and no checkpoint; --resume dropped the fitted samplers and final.json first
    UNWRITABLE[damage](run)

    def files() -> dict:
        return {p.relative_to(run): p.read_bytes() for p in run.rglob("*")
                if p.is_file() and not p.is_symlink()}

    before = files()
    assert_refused(["train", "--data-dir", str(base["data"]), "--out", str(run), flag, "--quiet",
                    "--epochs", "3", "--latent-dim", "4", "--batch-size", "50"], capsys)
    assert files() == before


# ---------------------------------------------------------------- resume with the run's own flags

def test_resume_accepts_the_runs_own_flags_and_names_the_ones_that_differ(base, run, capsys):
    argv = ["train", "--data-dir", str(base["data"]), "--out", str(run), "--latent-dim", "4",
            "--batch-size", "50", "--seed", "0", "--device", "cpu", "--quiet"]
    assert run_main(argv + ["--resume", "--epochs", "3"], capsys)[0] == 0
    line = assert_refused(argv + ["--resume", "--epochs", "4", "--lr", "0.5", "--seed", "1"], capsys)
    assert "--lr 0.5 (the run has 0.001), --seed 1 (the run has 0) cannot change" in line


# ---------------------------------------------------------------- forged checkpoints

def _forge_checkpoint(path: Path, change) -> None:
    tensors, state = load_checkpoint(path)
    change(tensors, state)
    save_checkpoint(path, tensors, state)  # a valid checksum: only the values are wrong


@pytest.mark.parametrize("damage", [
    lambda t, s: s["metrics"][0].update(valid_loss="low"),
    lambda t, s: s["metrics"][0].update(epoch=7),
    lambda t, s: s.update(metrics="none"),
    lambda t, s: s["param_groups"][0].update(lr="fast"),
    lambda t, s: s["param_groups"][0].update(betas=[0.9]),
    lambda t, s: s.update(param_groups={}),
])
def test_forged_checkpoint_state_is_refused_before_training(run, base, capsys, damage):
    _forge_checkpoint(run / "checkpoint.safetensors", damage)
    before = (run / "metrics.jsonl").read_bytes()
    assert_refused(["train", "--out", str(run), "--resume", "--epochs", "3", "--quiet"], capsys, "checkpoint")
    assert (run / "metrics.jsonl").read_bytes() == before


def test_checkpoint_symlink_is_refused(run, capsys):
    target = run.parent / "other.safetensors"
    shutil.copy(run / "checkpoint.safetensors", target)
    _symlink(run / "checkpoint.safetensors", str(target))
    assert_refused(["train", "--out", str(run), "--resume", "--epochs", "3", "--quiet"], capsys, "checkpoint")


# ---------------------------------------------------------------- symlinked output folders: writes

# each command and the subfolder of the run it writes into (train --resume: figures/ every epoch)
WRITES = {"train": "figures", "explain": "explain", "evaluate": "evaluation",
          "sample": "samples", "fit": "samplers", "tensorboard": "tensorboard"}


def _writer(name: str, run_dir: Path, data: Path) -> list[str]:
    return {"train": ["train", "--out", str(run_dir), "--resume", "--epochs", "3", "--quiet"],
            "explain": ["explain", str(run_dir)],
            "evaluate": ["evaluate", str(run_dir), "--n", "10", "--samplers", "normal"],
            "sample": ["sample", str(run_dir), "--n", "4"],  # default --out: RUN/samples/normal.png
            "fit": ["sample", str(run_dir), "--sampler", "gaussian", "--n", "4", "--out",
                    str(run_dir / "g.png")],
            # a new run over this one (a resume would refuse the changed flag first)
            "tensorboard": ["train", "--data-dir", str(data), "--out", str(run_dir), "--force", "--quiet",
                            "--epochs", "1", "--latent-dim", "4", "--batch-size", "50",
                            "--tensorboard"]}[name]


@pytest.mark.parametrize("name", list(WRITES))
@pytest.mark.parametrize("kind", ["symlink to a folder outside", "a file"])
def test_an_output_folder_that_is_a_symlink_or_a_file_is_never_written_through(base, run, tmp_path, capsys,
                                                                               name, kind):
    folder = run / WRITES[name]
    if folder.is_dir():
        shutil.rmtree(folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    if kind == "a file":
        folder.write_text("not a folder")
    else:
        _symlink(folder, str(outside))
    code, lines = run_main(_writer(name, run, base["data"]), capsys)
    assert list(outside.iterdir()) == []
    assert 1 <= len(lines) <= 3 and WRITES[name] in lines[-1], lines
    # refused; only a sampler's cache may fail to save while its samples are written
    assert code != 0 or (name == "fit" and "not saved" in lines[-1]), (code, lines)
    if kind == "a file":
        assert folder.read_text() == "not a folder"


def test_a_symlinked_folder_above_the_run_is_the_users_choice(base, tmp_path, capsys):
    """A project folder with its own config.json and runs/ symlinked to other storage: a new run
    trains there, and its own subfolders are checked below the run folder only."""
    project, storage = tmp_path / "project", tmp_path / "storage"
    project.mkdir()
    storage.mkdir()
    (project / "config.json").write_text("{}")
    (project / "runs").symlink_to(storage)
    code, lines = run_main(["train", "--data-dir", str(base["data"]), "--out", str(project / "runs" / "a"),
                            "--quiet", "--epochs", "1", "--latent-dim", "4", "--batch-size", "50"], capsys)
    assert code == 0, lines
    assert (storage / "a" / "figures" / "loss.png").is_file()
    assert main(["explain", str(project / "runs" / "a")]) == 0
    assert (storage / "a" / "explain" / "explain.md").is_file()


def test_a_run_without_its_marker_is_still_guarded(run, tmp_path, capsys):
    (run / ".aelab-run").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    _symlink(run / "explain", str(outside))
    assert "explain is a symlink" in assert_refused(["explain", str(run)], capsys)
    assert list(outside.iterdir()) == []


def test_a_symlink_planted_as_the_temp_file_is_not_written_through(run, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    _symlink(run / ".report.html.tmp", str(victim))
    code, lines = run_main(["report", str(run)], capsys)
    assert victim.read_text() == "keep me"
    assert code == 0 or len(lines) <= 3, lines


def test_a_subfolder_symlinked_to_another_run_is_still_a_symlink(run, tmp_path, capsys):
    """figures/ -> a folder with its own run marker: the marker there does not make it a run root."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / ".aelab-run").write_text("")
    (victim / "loss.png").write_text("keep me")
    shutil.rmtree(run / "figures")
    _symlink(run / "figures", str(victim))
    assert "figures is a symlink" in assert_refused(command("train", run, tmp_path), capsys)
    assert sorted(p.name for p in victim.iterdir()) == [".aelab-run", "loss.png"]
    assert (victim / "loss.png").read_text() == "keep me"


def test_a_hard_link_planted_as_the_temp_file_is_not_written_through(run, tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    os.link(outside, run / ".report.html.tmp")
    code, lines = run_main(["report", str(run)], capsys)
    assert code == 0, lines
    assert outside.read_text() == "keep me"
    assert (run / "report.html").read_text().startswith("<!")


def test_a_fifo_planted_as_the_temp_file_does_not_block(run):
    os.mkfifo(run / ".report.html.tmp")
    done = aelab_process(["report", str(run)])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert (run / "report.html").is_file()


def test_a_finished_holder_never_removes_a_lock_file_that_is_not_its_own(tmp_path):
    # a failed start's cleanup removes .lock while it holds it; another start may then make and
    # lock a new one: the first must not delete that on its way out
    from aelab import runlock

    folder = tmp_path / "run"
    folder.mkdir()
    lockfile = folder / ".lock"
    with runlock.hold(folder, lockfile):
        lockfile.unlink()
        with runlock.hold(folder, lockfile):  # the other start's lock, on a new file
            pass  # (it removes its own on the way out)
        lockfile.write_text("another start's lock\n")
    assert lockfile.read_text() == "another start's lock\n"


def test_a_planted_lock_file_is_refused_without_writing_through(run, tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    os.link(outside, run / ".lock")
    assert "is not a plain file" in assert_refused(command("train", run, tmp_path), capsys)
    assert outside.read_text() == "keep me"
    (run / ".lock").unlink()
    os.mkfifo(run / ".lock")
    done = aelab_process(command("train", run, tmp_path))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and "is not a plain file" in lines[0], done.stderr


# ---------------------------------------------------------------- huge arguments, odd paths

@pytest.mark.parametrize("argv, words", [
    (["sample", "{run}", "--n", "1000000000"], "at most 100,000"),
    (["evaluate", "{run}", "--n", "99999999999"], "at most 100,000"),
    (["sample", "{run}", "--sampler", "gmm", "--components", "100000000"], "at most 10,000"),
    (["train", "--latent-dim", "100000", "--out", "{tmp}/x"], "at most 1,024"),
    (["train", "--epochs", "10000000000", "--out", "{tmp}/x"], "at most 100,000"),
    (["train", "--batch-size", "10000000000", "--out", "{tmp}/x"], "at most 65,536"),
    (["train", "--seed", "-5", "--out", "{tmp}/x"], "2**32"),
    (["sample", "{run}", "--seed", "99999999999999999999"], "2**32"),
    (["train", "--lr", "inf", "--out", "{tmp}/x"], "lr=inf"),
    (["train", "--beta", "nan", "--out", "{tmp}/x"], "beta=nan"),
    (["sample", "~nosuchuser_aelab/run"], "cannot expand"),
    (["train", "--out", "~nosuchuser_aelab/run"], "cannot expand"),
    (["train", "--data-dir", "~nosuchuser_aelab/data", "--out", "{tmp}/x"], "cannot expand"),
])
def test_huge_or_odd_arguments_are_one_or_two_lines(run, tmp_path, capsys, argv, words):
    argv = [a.format(run=run, tmp=tmp_path) for a in argv]
    code, lines = run_main(argv, capsys)
    assert code in (1, 2) and 1 <= len(lines) <= 3, lines
    assert any(words in line for line in lines), lines
    assert not (tmp_path / "x").exists()


def test_api_refuses_a_huge_sample_and_codes_of_the_wrong_size(base):
    import aelab
    from aelab.errors import AelabError

    run = aelab.load_run(base["run"])
    with pytest.raises(AelabError, match="from 1 to 100,000"):
        run.sample(10**9)
    with pytest.raises(AelabError, match=r"shape \(n, 4\)"):
        run.decode(np.zeros((2, 5)))
    with pytest.raises(AelabError, match="NaN"):
        run.decode(np.full((2, 4), np.nan))
    with pytest.raises(AelabError, match="NaN"):
        run.encode(np.full((2, 28, 28), np.nan, dtype=np.float32))


# ---------------------------------------------------------------- full and read-only disks

@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KB tmpfs where the machine lets us mount one (root in a VM), else skip."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_while_writing_samples_and_exports(base, run, tiny_disk, capsys):
    (tiny_disk / "filler").write_bytes(b"\0" * (250 << 10))
    assert_refused(["sample", str(run), "--n", "64", "--out", str(tiny_disk / "s.png"),
                    "--npy", str(tiny_disk / "s.npy")], capsys, "cannot write")
    assert_refused(["export", str(run), "--onnx", str(tiny_disk / "onnx")], capsys, "cannot write")
    assert sorted(p.name for p in tiny_disk.rglob("*")) in (["filler"], ["filler", "onnx"])


def test_full_disk_while_training_keeps_the_last_checkpoint(base, tiny_disk, capsys):
    out = tiny_disk / "run"
    assert_refused(["train", "--data-dir", str(base["data"]), "--out", str(out), "--epochs", "2",
                    "--latent-dim", "4", "--batch-size", "50", "--quiet"], capsys, "cannot")
    assert not list(tiny_disk.rglob(".*.tmp"))  # no temp file left behind


def test_export_pair_never_mixes_two_runs(base, run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "onnx"
    assert run_main(["export", str(base["run"]), "--onnx", str(out)], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.onnx")}
    import aelab.errors
    import aelab.files

    real, calls = aelab.files.atomic_write_bytes, []

    def fail_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise aelab.errors.RunError(f"cannot write {path}: No space left on device")
        real(path, data)

    monkeypatch.setattr("aelab.export.atomic_write_bytes", fail_second)
    assert_refused(["export", str(run), "--onnx", str(out)], capsys, "No space left")
    assert {p.name: p.read_bytes() for p in out.glob("*.onnx")} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".export-")]
