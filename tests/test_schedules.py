"""Schedules, the KL warm-up, shift augmentation and the validation split: pure functions of the
step (or of the saved RNG), saved with the run, and a run interrupted mid-epoch and resumed ends
byte-identical to one straight run."""

import json
import math

import pytest
import torch

from aelab.augment import random_shift
from aelab.engine import Interrupted
from aelab.presets import resolve_config
from aelab.schedules import SCHEDULES, kl_weight, lr_factor
from aelab.splits import Split, heldout_indices
from aelab.training import train
from helpers_reliability import interrupt_after_steps


def test_schedules_are_pure_functions_of_the_step():
    total, warmup = 1000, 100
    assert SCHEDULES.names() == ["constant", "cosine", "onecycle"]
    assert [lr_factor("constant", s, total, 0) for s in (0, 999)] == [1.0, 1.0]
    assert lr_factor("constant", 49, total, warmup) == pytest.approx(0.5)
    cosine = [lr_factor("cosine", s, total, warmup) for s in range(total)]
    assert cosine[99] == 1.0 and cosine[-1] < 1e-4 and cosine == sorted(cosine[:100]) + cosine[100:]
    assert all(a >= b for a, b in zip(cosine[100:], cosine[101:]))
    one = [lr_factor("onecycle", s, total, 0) for s in range(total)]
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0, abs=1e-4)
    assert one.index(max(one)) == 300 and one[-1] < 1e-4
    assert [kl_weight(s, 10) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0] and kl_weight(0, 0) == 1.0
    assert math.isclose(lr_factor("cosine", 550, total, warmup), lr_factor("cosine", 550, total, warmup))


def test_shifts_move_each_image_whole(small_mnist):
    x = small_mnist.train_images[:64].float().reshape(64, 784) / 255
    torch.manual_seed(0)
    y = random_shift(x, 2).reshape(64, 28, 28)
    moved = 0
    for a, b in zip(x.reshape(64, 28, 28), y):
        padded = torch.nn.functional.pad(a, (2, 2, 2, 2))
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(b, padded[dy:dy + 28, dx:dx + 28])]
        assert found
        moved += found[0] != (2, 2)
    assert moved > 48  # 24 of 25 offsets move the digit


def test_the_validation_split_is_carved_from_training_images_and_fixed(small_mnist):
    train_idx, valid_idx = heldout_indices(3000, 1 / 12)
    assert len(valid_idx) == 250 and len(train_idx) == 2750
    assert set(train_idx.tolist()).isdisjoint(valid_idx.tolist())
    assert torch.equal(heldout_indices(3000, 1 / 12)[1], valid_idx)  # the same images every time
    split = Split.of(small_mnist, 1 / 12)
    assert torch.equal(split.valid_images, small_mnist.train_images[valid_idx])
    assert split.info()["valid"]["name"] == "heldout" and split.info()["test"]["n"] == 1000
    tutorial = Split.of(small_mnist, 0)
    assert tutorial.valid_images is small_mnist.test_images and tutorial.valid_name == "test"
    assert resolve_config("seed").train.valid_fraction == 0
    assert resolve_config("seed-1st-try").train.valid_fraction == 0
    assert resolve_config("compare").train.valid_fraction == pytest.approx(1 / 12)


def _records(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("overrides", [
    {"kind": "vae", "kl_warmup_epochs": 1.5, "schedule": "cosine", "warmup_epochs": 0.5},
    {"code_penalty": 1e-3, "decoder_weight_decay": 1e-4, "schedule": "onecycle", "augment_shift": 2},
], ids=["vae-kl-warmup-cosine", "rae-onecycle-shifts"])
def test_interrupted_and_resumed_is_byte_identical(tmp_path, small_mnist, monkeypatch, overrides):
    cfg = dict(architecture="dense-linear", latent_dim=8, epochs=2, **overrides)
    data = small_mnist
    whole = train(resolve_config("compare", cfg), tmp_path / "whole", data=data, quiet=True,
                  log=lambda s: None)
    interrupt_after_steps(monkeypatch, 30)  # epoch 2 of 2 (22 steps per epoch on 2,750 images)
    with pytest.raises(Interrupted, match="epoch 2 at step 8"):
        train(resolve_config("compare", cfg), tmp_path / "split", data=data, quiet=True, log=lambda s: None)
    monkeypatch.undo()
    split = train(resolve_config("compare", {"epochs": 2}), tmp_path / "split", resume=True, data=data,
                  quiet=True, log=lambda s: None)
    assert (whole.path / "model.safetensors").read_bytes() == (split.path / "model.safetensors").read_bytes()
    assert _records(whole.path) == _records(split.path)
    saved = json.loads((split.path / "config.json").read_text())["config"]["train"]
    assert all(saved[k] == v for k, v in overrides.items() if k in saved)
    records = _records(whole.path)
    lrs = [r["lr"] for r in records]
    assert lrs[0] != lrs[1] and lrs[1] < 2e-3  # scheduled, not constant
    parts = {"vae": ("recon", "kl", "mse"), "ae": ("mse", "code_l2")}[whole.config.model.kind]
    assert all(f"{s}_{p}" in r for r in records for s in ("train", "valid") for p in ("loss", *parts))
    if whole.config.model.kind == "vae":  # beta ramps over 1.5 epochs of 22 steps: 21/33 at step 22
        assert [r["kl_weight"] for r in records] == [pytest.approx(21 / 33), 1.0]
    final = json.loads((whole.path / "final.json").read_text())
    assert final["splits"]["valid"]["n"] == 250 and final["splits"]["train"]["n"] == 2750
    assert set(final["test"]) == {"loss", *parts} and final["valid"]["mse"] == records[-1]["valid_mse"]
    assert (whole.path / "figures" / "loss.png").is_file()
