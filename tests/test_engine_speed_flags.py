"""The speed flags train as well as the default, and the speed benchmark runs end to end.

No timings are asserted here: this machine is shared, so speed is measured only as ratios inside one
benchmark run (benchmarks/train_speed.py, results in benchmarks/README.md).
"""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aelab.matmul import available_backends
from aelab.presets import resolve_config
from aelab.training import train

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCHMARK = BENCHMARKS / "train_speed.py"


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
    # the threads axis, idle and beside a busy process, and auto's recorded choice
    assert set(res["conditions"]) == {"idle", "busy"} and s["busy_auto_over_one"] > 0
    # "1 torch": threads and matmul backend (conftest's AELAB_MATMUL=torch reaches the children)
    assert all(re.fullmatch(r"[1-9][0-9]* torch", setting) for c in s["auto_chose"].values() for setting in c)
    floors = s["floor_by_backend"]  # the floor times every backend this build runs, and takes the fastest
    assert set(floors) == set(available_backends()) and s["floor_s"] <= min(floors.values()) * 1.0001
    assert "aelab `auto` / the loop" in proc.stdout and "| the tutorial's loop, " in proc.stdout
    assert "beside a busy process `auto` / one thread" in proc.stdout


def _graph_module():
    spec = importlib.util.spec_from_file_location("cuda_graph_step", BENCHMARKS / "cuda_graph_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cuda_graph_step_logic_on_cpu(tmp_path, small_mnist, monkeypatch):
    """benchmarks/cuda_graph_step.py without a graph (capture=False; the capture itself needs a GPU):
    its warm-up steps are undone exactly, and it trains like aelab."""
    graph = _graph_module()
    cpu = torch.device("cpu")
    warmed = graph.graphed_training(small_mnist, epochs=1, seed=1, device=cpu, capture=False)
    monkeypatch.setattr(graph, "WARMUP_STEPS", 0)
    cold = graph.graphed_training(small_mnist, epochs=1, seed=1, device=cpu, capture=False)
    assert not warmed["captured"]
    assert [e["valid_mse"] for e in warmed["epochs"]] == [e["valid_mse"] for e in cold["epochs"]]
    assert [e["train_mse"] for e in warmed["epochs"]] == [e["train_mse"] for e in cold["epochs"]]
    ours = resolve_config("seed", {"epochs": 1, "seed": 1, "device": "cpu"})
    run = train(ours, tmp_path / "run", data=small_mnist, quiet=True, log=lambda line: None)
    assert warmed["valid_mse"] == pytest.approx(run.metrics[-1]["valid_mse"], rel=0.05)
