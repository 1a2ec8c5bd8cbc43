import pytest

from aelab.config import config_from_dict
from aelab.errors import AelabError
from aelab.presets import list_presets, resolve_config


def test_presets_match_the_tutorial():
    seed = resolve_config("seed")
    assert (seed.train.lr, seed.train.batch_size, seed.train.epochs) == (1e-3, 128, 20)
    assert seed.model.output_activation == "relu" and seed.model.latent_dim == 128
    first = resolve_config("seed-1st-try")
    assert first.train.lr == 0.1 and first.model.output_activation == "none"
    assert {"seed", "seed-1st-try", "vae"} <= set(list_presets())


def test_overrides_apply_to_any_section_and_skip_none():
    cfg = resolve_config("seed", {"lr": 0.01, "latent_dim": 32, "dataset": "kmnist", "epochs": None})
    assert cfg.train.lr == 0.01 and cfg.model.latent_dim == 32 and cfg.data.dataset == "kmnist"
    assert cfg.train.epochs == 20


def test_round_trip_through_dict():
    cfg = resolve_config("vae", {"beta": 2.0})
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("overrides, word", [
    ({"lr": -1.0}, "lr=-1.0"), ({"batch_size": 1}, "batch_size=1"),
    ({"output_activation": "tanh"}, "tanh"), ({"nonsense": 1}, "nonsense")])
def test_bad_values_are_named(overrides, word):
    with pytest.raises(AelabError, match=word):
        resolve_config("seed", overrides)


def test_unknown_preset():
    with pytest.raises(AelabError, match="unknown preset 'x'; choose from seed"):
        resolve_config("x")
