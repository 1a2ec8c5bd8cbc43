"""The first hour of a new user: one data notice where something happens, quiet means quiet, every
file of a run readable alike, no lock left behind, and the report keeps up with each command.

Runs on the bundled subset with AELAB_OFFLINE=1 (conftest), the newcomer's path with no data.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aelab.cli import main
from aelab.presets import resolve_config
from aelab.training import train


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("first-hour") / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", "--latent-dim", "4", "--batch-size", "200",
                 "--quiet", "--threads", "1"]) == 0
    return out


def _notices(err: str) -> list[str]:
    return [line for line in err.splitlines() if "bundled subset" in line]


def test_the_data_notice_is_said_once_by_train_and_never_by_the_commands_after_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", "--latent-dim", "4", "--batch-size", "200",
                 "--threads", "1"]) == 0
    notices = _notices(capsys.readouterr().err)
    assert len(notices) == 1 and "training" not in notices[0]
    for argv in (["sample", str(out), "--n", "4"], ["explain", str(out)]):
        assert main(argv) == 0
        assert _notices(capsys.readouterr().err) == [], argv


def test_quiet_means_no_notice_in_the_cli_and_the_api(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "a"), "--epochs", "1", "--latent-dim", "4",
                 "--batch-size", "200", "--quiet", "--threads", "1"]) == 0
    assert _notices(capsys.readouterr().err) == []
    lines: list[str] = []
    train(resolve_config("seed", {"epochs": 1, "latent_dim": 4, "batch_size": 200, "threads": 1}),
          tmp_path / "b", quiet=True, log=lines.append)
    assert [line for line in lines if "bundled" in line] == []


def test_every_file_of_a_run_has_the_same_mode_and_no_lock_is_left(bundled_run):
    assert main(["sample", str(bundled_run), "--sampler", "gaussian", "--n", "4"]) == 0
    files = [p for p in bundled_run.rglob("*") if p.is_file()]
    modes = {p.relative_to(bundled_run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert "samplers/gaussian.safetensors" in modes and len(set(modes.values())) == 1, modes
    assert not (bundled_run / ".lock").exists()


def test_the_report_follows_every_command_that_adds_to_the_run(bundled_run):
    report = bundled_run / "report.html"
    assert main(["sample", str(bundled_run), "--sampler", "normal", "--n", "4"]) == 0
    assert 'alt="sampler normal"' in report.read_text()
    assert main(["explain", str(bundled_run)]) == 0
    assert 'id="explain"' in report.read_text()
