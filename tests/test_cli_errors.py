"""Every command, given wrong arguments, missing files or a missing run folder, exits non-zero with
one line and never a traceback.

What "one line" means: runtime errors (exit 1) print exactly one non-empty line on stderr,
`aelab: error: ...`. Usage errors (exit 2) print argparse's standard pair: the command's usage
block, then exactly one `aelab CMD: error: ...` line, which is the last line.

Most cases call `aelab.cli.main` in this process (an escaping exception is what would become a
traceback); a few run `python -m aelab` for real to show the same at the process level.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aelab.cli import main
from aelab.presets import resolve_config
from aelab.training import train
from helpers_reliability import run_main, write_small_idx_dir

COMMANDS = ["train", "sample", "explain", "evaluate", "report", "export"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A finished tiny run and damaged copies of it, plus a data folder and a plain file."""
    root = tmp_path_factory.mktemp("cli")
    data = write_small_idx_dir(root / "data", n_train=300, n_test=100)
    cfg = resolve_config("seed", {"epochs": 1, "latent_dim": 2, "batch_size": 32, "data_dir": str(data),
                                  "device": "cpu"})
    run = root / "run"
    train(cfg, run, quiet=True, log=lambda line: None)
    partial = root / "partial"  # killed before it finished: no model.safetensors
    shutil.copytree(run, partial)
    (partial / "model.safetensors").unlink()
    bad_config = root / "bad-config"
    shutil.copytree(run, bad_config)
    (bad_config / "config.json").write_text("{not json")
    bad_weights = root / "bad-weights"
    shutil.copytree(run, bad_weights)
    (bad_weights / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:1000])
    float_latent = root / "float-latent"
    shutil.copytree(run, float_latent)
    text = (run / "config.json").read_text()
    (float_latent / "config.json").write_text(text.replace('"latent_dim": 2,', '"latent_dim": 2.5,'))
    assert (float_latent / "config.json").read_text() != text
    plain_file = root / "plain-file"
    plain_file.write_text("not a folder")
    return {"run": run, "partial": partial, "bad-config": bad_config, "bad-weights": bad_weights,
            "float-latent": float_latent, "data": data, "file": plain_file, "missing": root / "missing",
            "root": root}


def command(name: str, run_dir: Path, root: Path) -> list[str]:
    """The command `name` pointed at `run_dir`, with the least other arguments it needs."""
    return {"train": ["train", "--out", str(run_dir), "--resume", "--quiet"],
            "sample": ["sample", str(run_dir), "--n", "4", "--out", str(root / "samples.png")],
            "explain": ["explain", str(run_dir)],
            "evaluate": ["evaluate", str(run_dir), "--n", "10"],
            "report": ["report", str(run_dir)],
            "export": ["export", str(run_dir), "--onnx", str(root / "onnx")]}[name]


def assert_one_error_line(argv, capsys, *words: str) -> str:
    code, lines = run_main(argv, capsys)
    assert code == 1, (code, lines)
    assert len(lines) == 1 and lines[0].startswith("aelab: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- missing or damaged run folders


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("folder, words", [
    ("missing", "no run folder at {path}"),
    ("data", "{path} is not a run folder (no config.json)"),
    ("file", "no run folder at {path}"),
    ("bad-config", "{path}/config.json is not valid JSON"),
])
def test_every_command_refuses_a_missing_or_broken_run_folder(folders, capsys, name, folder, words):
    path = folders[folder]
    assert_one_error_line(command(name, path, folders["root"]), capsys, words.format(path=path))


@pytest.mark.parametrize("name", ["sample", "explain", "evaluate", "export"])
@pytest.mark.parametrize("folder, words", [
    ("partial", "no weights at {path}/model.safetensors: the run has not finished (continue it with "
                "aelab train --resume"),
    ("bad-weights", "weights file {path}/model.safetensors is corrupt or truncated"),
])
def test_commands_that_need_weights_say_so(folders, capsys, name, folder, words):
    path = folders[folder]
    assert_one_error_line(command(name, path, folders["root"]), capsys, words.format(path=path))


@pytest.mark.parametrize("name", ["train", "sample"])
def test_a_config_with_a_float_latent_dim_is_refused(folders, capsys, name):
    assert_one_error_line(command(name, folders["float-latent"], folders["root"]), capsys, "latent_dim")


# ---------------------------------------------------------------- train's own errors


def test_train_errors_are_one_line(folders, capsys, tmp_path):
    run, data = folders["run"], folders["data"]
    assert_one_error_line(["train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")],
                          capsys, f"data folder {tmp_path / 'nowhere'} does not exist")
    assert_one_error_line(["train", "--data-dir", str(data), "--out", str(run), "--quiet"], capsys,
                          "already holds a run; continue it with --resume")
    assert_one_error_line(["train", "--out", str(run), "--resume", "--force"], capsys, "contradict")
    assert_one_error_line(["train", "--resume"], capsys, "--resume needs --out RUN_DIR")
    assert_one_error_line(["train", "--out", str(run), "--resume", "--lr", "0.1", "--preset", "vae"], capsys,
                          "--resume continues the run as configured; --preset vae (the run has seed), "
                          "--lr 0.1 (the run has 0.001) cannot change (only --epochs, --data-dir, "
                          "--checkpoint-minutes can)")
    assert_one_error_line(["train", "--data-dir", str(data), "--out", str(tmp_path / "b"),
                           "--batch-size", "1"], capsys, "batch_size=1 must be at least 2")
    assert_one_error_line(["train", "--data-dir", str(folders["file"]), "--out", str(tmp_path / "c")],
                          capsys, "not a folder")
    # a failed start leaves nothing behind: no folder (nor the parents it made), so the corrected
    # command needs no --force, and a retry with the default --out adds no empty runs/<name>/
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert_one_error_line(["train", "--data-dir", str(tmp_path / "nowhere"),
                           "--out", str(kept / "x" / "run")], capsys, "does not exist")
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    assert_one_error_line(["train", "--data-dir", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "empty")], capsys, "does not exist")
    assert (tmp_path / "empty").is_dir()  # a folder that was there before stays
    code, _ = run_main(["train", "--data-dir", str(data), "--out", str(tmp_path / "a"), "--epochs", "1",
                        "--latent-dim", "2", "--batch-size", "32", "--quiet", "--device", "cpu"], capsys)
    assert code == 0


def test_sample_to_an_unwritable_place_is_one_line(folders, capsys):
    assert_one_error_line(["sample", str(folders["run"]), "--n", "4", "--out",
                           str(folders["file"] / "x.png")], capsys, "cannot write")


def test_evaluate_refuses_an_unknown_sampler_before_any_work(folders, capsys):
    assert_one_error_line(["evaluate", str(folders["run"]), "--samplers", "nope,normal", "--n", "10"],
                          capsys, "unknown sampler 'nope'")


# ---------------------------------------------------------------- usage errors (exit 2)

USAGE_ERRORS = [
    [], ["frobnicate"], ["train", "--bogus"],
    ["train", "--epochs", "0"], ["train", "--epochs", "-3"], ["train", "--epochs", "abc"],
    ["train", "--lr", "abc"], ["train", "--lr", "0"], ["train", "--lr", "-1"],
    ["train", "--preset", "nope"], ["train", "--latent-dim", "0"], ["train", "--batch-size", "x"],
    ["train", "--checkpoint-minutes", "0"], ["train", "--device", "tpu"], ["train", "--seed", "1.5"],
    ["sample"], ["sample", "RUN", "--n", "-1"], ["sample", "RUN", "--n", "0"],
    ["sample", "RUN", "--n", "abc"],
    ["sample", "RUN", "--sampler", "nope"], ["sample", "RUN", "--components", "0"],
    ["explain"], ["explain", "RUN", "--seed", "x"],
    ["evaluate"], ["evaluate", "RUN", "--n", "0"], ["evaluate", "RUN", "--n", "-1"],
    ["report"], ["report", "RUN", "--bogus"],
    ["export", "RUN"], ["export"],
    ["compare", "--out", "C", "--n", "100000000"], ["compare", "--out", "C", "--n", "-1"],  # was 313 GB
    ["compare", "--out", "C", "--seed", "-1"], ["compare", "--out", "C", "--components", "0"],
    ["models", "--latent-dim", "100000"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=lambda argv: " ".join(argv) or "nothing")
def test_usage_errors_exit_2_with_usage_and_one_error_line(folders, capsys, argv):
    argv = [str(folders["run"]) if a == "RUN" else a for a in argv]
    code, lines = run_main(argv, capsys)
    assert code == 2, (code, lines)
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("aelab"), lines
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), lines  # the usage block


# ---------------------------------------------------------------- the same, as real processes


def test_real_processes_print_no_traceback(folders):
    """Two commands as `python -m aelab`, in parallel: exit codes and stderr as a user sees them."""
    missing = str(folders["missing"])
    cases = {("evaluate", missing): 1, ("train", "--epochs", "0"): 2}
    procs = {argv: subprocess.Popen([sys.executable, "-m", "aelab", *argv], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for argv in cases}
    for argv, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == cases[argv], (argv, err)
        assert "Traceback" not in err and ": error: " in lines[-1], (argv, err)
        if cases[argv] == 1:
            assert lines == [f"aelab: error: no run folder at {missing}"], lines


# ---------------------------------------------------------------- help a newcomer can act on

@pytest.mark.parametrize("name", ["train", "sample", "explain", "evaluate", "report", "export", "explore",
                                  "models", "compare"])
def test_every_help_shows_an_example(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = capsys.readouterr().out
    assert f"example: aelab {name}" in out


def test_help_shows_defaults_and_version(capsys):
    for argv, words in ((["train", "--help"], ["seed: 20", "seed: 0.001", "(default: seed)"]),
                        (["sample", "--help"], ["default: normal", "default 128"]),
                        (["evaluate", "--help"], ["default 5000"])):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert all(w in out for w in words), (argv, out)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("aelab 0.")


def test_install_hints_fit_a_source_checkout():
    from aelab.extras import install_hint

    hint = install_hint("onnx")
    assert hint.startswith("pip install -e '") and hint.endswith("[onnx]'")  # tests run from a checkout
    assert Path(hint.split("'")[1].removesuffix("[onnx]"), "pyproject.toml").is_file()


def test_a_warning_is_one_line_like_an_error(monkeypatch, capsys):
    # a damaged classifier cache warned through Python's warnings: "file.py:153: UserWarning: ..."
    # and the source line after it
    import warnings

    import aelab.cli

    def report(args):
        warnings.warn("retraining the classifier: cannot read cache X")
        return 0
    monkeypatch.setattr(aelab.cli, "_cmd_report", report)
    assert main(["report", "RUN"]) == 0
    assert capsys.readouterr().err == "aelab: warning: retraining the classifier: cannot read cache X\n"


@pytest.mark.parametrize("argv", [["sample", ""], ["report", " "], ["export", "RUN", "--onnx", ""],
                                  ["train", "--out", "", "--epochs", "1"]])
def test_an_empty_path_is_one_line_not_the_current_folder(folders, capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)  # `aelab sample ""` wrote samples/ into the current folder
    argv = [str(folders["run"]) if a == "RUN" else a for a in argv]
    assert_one_error_line(argv, capsys, "is empty")
    assert list(tmp_path.iterdir()) == []


def test_a_start_that_loses_the_lock_race_removes_nothing(folders, tmp_path, monkeypatch):
    # two `aelab train` into one new folder: both saw no folder, the first holds the lock; the
    # second's cleanup after its failed start removed the first's marker, lock and folder
    import aelab.rundir
    import aelab.training
    from aelab.errors import RunError
    from aelab.rundir import RunDir

    out = tmp_path / "new" / "run"
    first = RunDir(out)
    first.prepare()
    with first.lock():
        # the second checked the folder and the lock before the first took it
        monkeypatch.setattr(aelab.training, "_first_missing", lambda path: tmp_path / "new")
        monkeypatch.setattr(aelab.rundir.runlock, "refuse_if_held", lambda folder, lockfile: None)
        cfg = resolve_config("seed", {"epochs": 1, "data_dir": str(folders["data"]), "device": "cpu"})
        with pytest.raises(RunError, match="another process"):
            train(cfg, out, quiet=True, log=lambda line: None)
        assert sorted(p.name for p in out.iterdir()) == [".aelab-run", ".lock", "figures"]



def test_an_empty_data_dir_means_not_given(tmp_path, capsys):
    # `--data-dir "$UNSET"` in a script: the default data (here the bundled subset), as before
    code, lines = run_main(["train", "--data-dir", "", "--out", str(tmp_path / "r"), "--epochs", "1",
                            "--batch-size", "1024", "--latent-dim", "8", "--quiet", "--device", "cpu",
                            "--threads", "1"], capsys)
    assert code == 0, lines
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["data"]["data_dir"] is None
