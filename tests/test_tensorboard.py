"""--tensorboard: scalars (train/valid loss, lr) and the reconstruction grid every epoch."""

from __future__ import annotations

import io

import numpy as np
import pytest

from aelab import resolve_config
from aelab.cli import build_parser
from aelab.training import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    IMAGES,
    SCALARS,
    EventAccumulator,
)


def test_cli_flag_sets_config():
    args = build_parser().parse_args(["train", "--tensorboard"])
    assert args.tensorboard is True


def test_events_match_metrics(tmp_path, small_mnist):
    cfg = resolve_config("seed", {"epochs": 2, "device": "cpu", "tensorboard": True})
    run = train(cfg, tmp_path / "run", data=small_mnist, quiet=True, log=lambda s: None)
    logdir = run.path / "tensorboard"
    assert list(logdir.glob("events.out.tfevents.*")), "no event file in RUN_DIR/tensorboard"
    events = EventAccumulator(str(logdir), size_guidance={SCALARS: 0, IMAGES: 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/train", "loss/valid", "lr"} <= set(tags["scalars"])
    for tag, key in (("loss/train", "train_loss"), ("loss/valid", "valid_loss"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2], tag
        expected = np.float32([m[key] for m in run.metrics])  # event files store float32
        assert np.array_equal(np.float32([s.value for s in scalars]), expected), tag

    assert "reconstruction" in tags["images"]
    images = events.Images("reconstruction")
    assert [i.step for i in images] == [1, 2]
    from PIL import Image

    for event in images:
        picture = Image.open(io.BytesIO(event.encoded_image_string))
        assert picture.width * picture.height == 25 * 28 * 28  # the 25 validation images shown
        assert np.asarray(picture).std() > 0  # not a blank picture
