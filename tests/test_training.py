"""A short real training run on real MNIST: the loss falls, the run folder is complete, resume is exact."""

import json

import pytest
import torch

from aelab.engine import evaluate_loss
from aelab.errors import RunError
from aelab.models import create_model
from aelab.presets import resolve_config
from aelab.run import load_run
from aelab.training import train


def quick(tmp_path, small_mnist, name="run", epochs=3, **overrides):
    cfg = resolve_config("seed", {"epochs": epochs, "seed": 1, **overrides})
    return train(cfg, tmp_path / name, data=small_mnist, quiet=True, log=lambda line: None)


def test_short_run_learns_and_writes_the_run_folder(tmp_path, small_mnist):
    run = quick(tmp_path, small_mnist)
    metrics = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["valid_loss"] < 0.8 * metrics[0]["valid_loss"]
    assert all({"train_loss", "valid_loss", "seconds"} <= m.keys() for m in metrics)
    figures = {p.name for p in (run.path / "figures").iterdir()}
    assert {"epoch_001.png", "epoch_003.png", "loss.png", "result_input.png", "result_output.png"} <= figures
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["config"]["train"]["epochs"] == 3
    assert saved["data"]["n_train"] == 3000 and saved["data"]["name"] == "mnist"
    # the saved weights reproduce the reported validation MSE
    loaded = load_run(run.path)
    x = small_mnist.test_images.float() / 255
    with torch.no_grad():
        mse = torch.mean((loaded.model(x) - x.reshape(-1, 784)) ** 2).item()
    assert mse == pytest.approx(metrics[-1]["valid_mse"], rel=1e-3)


def test_resume_gives_the_same_weights_as_one_run(tmp_path, small_mnist):
    whole = quick(tmp_path, small_mnist, "whole", epochs=2)
    quick(tmp_path, small_mnist, "split", epochs=1)
    (tmp_path / "split" / "samplers").mkdir()
    (tmp_path / "split" / "samplers" / "gmm.safetensors").write_bytes(b"fitted to epoch 1's codes")
    cfg = resolve_config("seed", {"epochs": 2})
    split = train(cfg, tmp_path / "split", resume=True, data=small_mnist, quiet=True, log=lambda s: None)
    assert not (split.path / "samplers").exists()
    assert (whole.path / "model.safetensors").read_bytes() == (split.path / "model.safetensors").read_bytes()
    assert [m["epoch"] for m in split.metrics] == [1, 2]


def test_refuses_to_overwrite_a_run_without_force(tmp_path, small_mnist):
    quick(tmp_path, small_mnist, epochs=1)
    with pytest.raises(RunError, match="already holds a run"):
        quick(tmp_path, small_mnist, epochs=1)
    run = tmp_path / "run"
    (run / "figures" / "epoch_009.png").write_bytes(b"an old run's figure")
    (run / "samplers").mkdir()
    (run / "samplers" / "gmm.safetensors").write_bytes(b"fitted to the old run's codes")
    (run / "notes.txt").write_text("the user's own file")
    cfg = resolve_config("seed", {"epochs": 1})
    again = train(cfg, run, force=True, data=small_mnist, quiet=True, log=lambda s: None)
    assert [m["epoch"] for m in again.metrics] == [1]
    assert not (run / "figures" / "epoch_009.png").exists() and not (run / "samplers").exists()
    assert (run / "figures" / "epoch_001.png").is_file() and (run / "notes.txt").is_file()


def test_vae_loss_falls(tmp_path, small_mnist):
    cfg = resolve_config("vae", {"epochs": 3, "seed": 0})
    torch.manual_seed(cfg.train.seed)
    untrained = evaluate_loss(create_model(cfg.model), small_mnist.test_images)["loss"]
    run = train(cfg, tmp_path / "vae", data=small_mnist, quiet=True, log=lambda s: None)
    losses = [m["valid_loss"] for m in run.metrics]
    assert losses[-1] < 0.4 * untrained  # ~540 nats per image untrained (sigmoid 0.5 everywhere)
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.95 * losses[0]
    assert run.sample(8, "normal").shape == (8, 28, 28)
