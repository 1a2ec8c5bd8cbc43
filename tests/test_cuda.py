"""The same engine on a GPU: skipped where torch sees no CUDA device (CI), run by scripts/gpu_check.sh.

Each test trains on real MNIST on the GPU and compares with what the CPU path gives or promises.
"""

import pytest
import torch

from aelab.engine import evaluate_loss
from aelab.presets import resolve_config
from aelab.run import load_run
from aelab.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _train(tmp_path, data, name, **overrides):
    cfg = resolve_config("seed", {"epochs": 2, "seed": 1, **overrides})
    return train(cfg, tmp_path / name, data=data, quiet=True, log=lambda line: None)


def test_seed_preset_on_cuda_matches_the_cpu(tmp_path, small_mnist):
    torch.cuda.reset_peak_memory_stats()
    gpu = _train(tmp_path, small_mnist, "gpu", device="cuda")
    cpu = _train(tmp_path, small_mnist, "cpu", device="cpu")
    # the uint8 training set lives on the GPU for the whole run
    assert torch.cuda.max_memory_allocated() >= small_mnist.train_images.nbytes
    assert gpu.metrics[-1]["valid_mse"] == pytest.approx(cpu.metrics[-1]["valid_mse"], rel=0.05)
    assert gpu.metrics[-1]["valid_mse"] < 0.5 * gpu.metrics[0]["train_mse"]


def test_bf16_and_the_vae_train_on_cuda(tmp_path, small_mnist):
    fp32 = _train(tmp_path, small_mnist, "fp32", device="cuda")
    bf16 = _train(tmp_path, small_mnist, "bf16", device="cuda", precision="bf16")
    assert bf16.metrics[-1]["valid_mse"] == pytest.approx(fp32.metrics[-1]["valid_mse"], rel=0.1)
    vae = train(resolve_config("vae", {"epochs": 2, "device": "cuda"}), tmp_path / "vae",
                data=small_mnist, quiet=True, log=lambda line: None)
    assert vae.metrics[-1]["valid_loss"] < vae.metrics[0]["train_loss"]


def test_resume_on_cuda_continues_the_run(tmp_path, small_mnist):
    _train(tmp_path, small_mnist, "run", device="cuda", epochs=1)
    cfg = resolve_config("seed", {"epochs": 2, "device": "cuda"})
    run = train(cfg, tmp_path / "run", resume=True, data=small_mnist, quiet=True, log=lambda line: None)
    assert [m["epoch"] for m in run.metrics] == [1, 2]
    assert run.metrics[1]["valid_mse"] < run.metrics[0]["valid_mse"]


def test_a_run_loads_samples_and_evaluates_on_cuda(tmp_path, small_mnist):
    _train(tmp_path, small_mnist, "run", device="cuda", epochs=1)
    run = load_run(tmp_path / "run", device="cuda")
    codes = run.encode(small_mnist.test_images[:64])
    assert codes.shape == (64, 128)
    images = run.decode(codes)
    assert images.shape == (64, 28, 28) and 0 <= images.min() and images.max() <= 1
    loss = evaluate_loss(run.model, small_mnist.test_images.to("cuda"))
    assert loss["mse"] == pytest.approx(run.metrics[-1]["valid_mse"], rel=1e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_two_gpus_under_torchrun_match_one_gpu(tmp_path, mnist_dir):
    """2 processes, one GPU each (nccl, SyncBatchNorm over the global batch), against one GPU with
    the same global batch: the same losses up to float summation order (unsynced BatchNorm differs
    by 1.5-18% on CPU, tests/test_distributed.py). Written for, not yet run on, 2 GPUs."""
    import json
    import os
    import subprocess
    import sys

    args = ["-m", "aelab", "train", "--data-dir", str(mnist_dir), "--epochs", "2", "--batch-size", "256",
            "--seed", "0", "--device", "cuda", "--quiet"]
    env = {**os.environ, "AELAB_OFFLINE": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    for launcher, name in ((torchrun, "ddp"), ([sys.executable], "single")):
        done = subprocess.run([*launcher, *args, "--out", str(tmp_path / name)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    ddp, single = ([json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
                   for name in ("ddp", "single"))
    assert [r["steps"] for r in ddp] == [r["steps"] for r in single]
    for a, b in zip(ddp, single):
        for key in ("train_loss", "valid_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-2), (key, a, b)
