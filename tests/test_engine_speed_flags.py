"""The speed flags train as well as the default, and the speed benchmark runs end to end.

No timings are asserted here: this machine is shared, so speed is measured only as ratios inside one
benchmark run (benchmarks/train_speed.py, results in benchmarks/README.md).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aelab.presets import resolve_config
from aelab.training import train

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"


def valid_loss(tmp_path, data, name, **overrides):
    cfg = resolve_config("seed", {"epochs": 2, "seed": 1, "device": "cpu", **overrides})
    run = train(cfg, tmp_path / name, data=data, quiet=True, log=lambda line: None)
    return run.metrics[-1]["valid_loss"]


def test_bf16_autocast_trains_as_well_as_fp32(tmp_path, small_mnist):
    fp32 = valid_loss(tmp_path, small_mnist, "fp32")
    bf16 = valid_loss(tmp_path, small_mnist, "bf16", precision="bf16")
    assert bf16 == pytest.approx(fp32, rel=0.05)


def test_benchmark_quick_mode_writes_its_results(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--data", "random", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    s = res["summary"]
    assert s["floor_s"] > 0 and s["aelab_s"] > 0 and s["baseline_s"] > 0
    assert s["train_gflop"] > 0 and 0 < s["aelab_mse"] < 1 and 0 < s["baseline_mse"] < 1
    assert res["aelab"][0]["peak_rss_mb"] > res["aelab"][0]["dataset_mb"]
    assert {r["batch_size"] for r in res["scaling"]} == {64, 128}
    assert "aelab / floor" in proc.stdout and "| baseline: the tutorial's loop |" in proc.stdout
