"""`aelab compare` on a tiny grid of real MNIST: the table and figures, reuse, resume after an
interruption, a folder with other settings refused; 2-d codes drawn as they are."""

import dataclasses
import json

import pytest

from aelab.compare import compare, grid_from_text
from aelab.engine import Interrupted
from aelab.errors import AelabError, RunError
from helpers_reliability import interrupt_after_steps


@pytest.fixture(scope="module")
def tiny(mnist):
    """1,200 real training images (1,100 train, 100 held out) and 300 real test images."""
    return dataclasses.replace(mnist, train_images=mnist.train_images[:1200],
                               train_labels=mnist.train_labels[:1200], test_images=mnist.test_images[:300],
                               test_labels=mnist.test_labels[:300])


def test_compare_writes_its_tables_and_figures_and_continues_after_an_interruption(
        tmp_path, tiny, monkeypatch, capsys):
    grid = grid_from_text("dense-linear,conv-vae", "2,3")
    out = tmp_path / "cmp"
    # 9 steps per epoch: interrupt the 3rd run (conv-vae-2) in its 1st epoch, at step 4
    interrupt_after_steps(monkeypatch, 2 * 9 + 4, across_runs=True)
    with pytest.raises(Interrupted, match="run the same aelab compare command to continue"):
        compare(grid, out, epochs=1, n_samples=50, data=tiny, progress=False, command="test",
                components=8)
    monkeypatch.undo()
    first = (out / "dense-linear-2" / "model.safetensors").stat().st_mtime_ns
    assert not (out / "conv-vae-2" / "model.safetensors").exists()
    result = compare(grid, out, epochs=1, n_samples=50, data=tiny, progress=False, command="test",
                     components=8)
    assert (out / "dense-linear-2" / "model.safetensors").stat().st_mtime_ns == first  # reused
    saved = json.loads((out / "compare.json").read_text())
    names = ["dense-linear-2", "dense-linear-3", "conv-vae-2", "conv-vae-3"]
    assert [r["name"] for r in saved["runs"]] == names
    rows = {r["name"]: r for r in saved["runs"]}
    assert rows["dense-linear-2"]["sampler"] == "gmm" and rows["conv-vae-3"]["sampler"] == "prior"
    assert all(r["fid"] > 0 and 0 < r["test_mse"] < 0.2 and r["params"] > 0 for r in rows.values())
    assert [p["latent_dim"] for p in saved["pca"]] == [2, 3] and saved["settings"]["ranked_on"] == "valid"
    splits = saved["settings"]["splits"]
    assert splits["valid"]["n"] == 100 and splits["test"]["n"] == 300
    md = (out / "compare.md").read_text()
    assert md == result["markdown"] and "| PCA | " in md and "| conv-vae |" in md
    assert f"{rows['dense-linear-3']['test_mse']:.5f}" in md
    for name in ("compare-mse.png", "compare-fid.png", "compare-cost.png"):
        assert (out / name).stat().st_size > 10_000
    lines = (out / "conv-vae-2" / "metrics.jsonl").read_text().splitlines()
    interrupted = [json.loads(line) for line in lines]
    assert [m["epoch"] for m in interrupted] == [1] and "train_kl" in interrupted[0]
    # a run made before --matmul existed (its config.json without the fields) is still reused
    config = out / "dense-linear-2" / "config.json"
    saved_config = json.loads(config.read_text())
    train_section = saved_config["config"]["train"]
    assert train_section["matmul"] == train_section["matmul_chosen"] == "torch"  # the compare preset's
    del train_section["matmul"], train_section["matmul_chosen"]
    config.write_text(json.dumps(saved_config))
    compare(grid, out, epochs=1, n_samples=50, data=tiny, progress=False, command="test", components=8)
    assert (out / "dense-linear-2" / "model.safetensors").stat().st_mtime_ns == first
    # a folder that holds other settings is refused before any work
    with pytest.raises(AelabError, match="holds a run with other settings"):
        compare(grid, out, epochs=2, n_samples=0, data=tiny, progress=False)
    # what compare reads back is untrusted: a damaged score cache is scored again, a damaged
    # final.json is one error naming it
    (out / "dense-linear-2" / "compare-scores.json").write_text("{not json")
    again = compare(grid, out, epochs=1, n_samples=50, data=tiny, progress=False, command="test",
                    components=8)
    assert again["runs"][0]["test_mse"] == rows["dense-linear-2"]["test_mse"]
    (out / "dense-linear-2" / "compare-scores.json").unlink()
    (out / "dense-linear-2" / "final.json").write_text('{"epoch": "twenty"}')
    with pytest.raises(RunError, match="final.json: epoch='twenty'"):
        compare(grid, out, epochs=1, n_samples=50, data=tiny, progress=False, components=8)


def test_a_cell_another_compare_finished_meanwhile_is_reused_not_retrained(tmp_path, tiny, monkeypatch):
    """Two `aelab compare` on one --out: the second checked every folder at its start, when the
    other had not finished dense-linear-2 yet; by the time it gets there the cell is done."""
    import aelab.compare

    grid = grid_from_text("dense-linear", "2")
    out = tmp_path / "cmp"
    compare(grid, out, epochs=1, n_samples=0, data=tiny, progress=False, command="test")
    first = (out / "dense-linear-2" / "model.safetensors").stat().st_mtime_ns
    real_state, calls = aelab.compare._state, []

    def state_at_the_start_new(path, cfg):  # the up-front check saw an empty folder
        calls.append(path.name)
        return "new" if len(calls) == 1 else real_state(path, cfg)
    monkeypatch.setattr(aelab.compare, "_state", state_at_the_start_new)
    again = compare(grid, out, epochs=1, n_samples=0, data=tiny, progress=False, command="test")
    assert calls == ["dense-linear-2", "dense-linear-2"]  # checked again before training it
    assert (out / "dense-linear-2" / "model.safetensors").stat().st_mtime_ns == first
    assert again["runs"][0]["test_mse"] > 0
    # its weights are read like every command reads them: never through a symlink (they were hashed
    # whole first, through one, however large), and a Python caller's n is bounded too
    weights = out / "dense-linear-2" / "model.safetensors"
    weights.rename(tmp_path / "outside.safetensors")
    weights.symlink_to(tmp_path / "outside.safetensors")
    (out / "dense-linear-2" / "compare-scores.json").unlink()
    with pytest.raises(RunError, match="symlink"):
        compare(grid, out, epochs=1, n_samples=0, data=tiny, progress=False, command="test")
    with pytest.raises(AelabError, match="from 2 to 100,000"):
        compare(grid, out, epochs=1, n_samples=10**8, data=tiny, progress=False, command="test")


def test_compare_grid_names_are_checked():
    assert [e.name for e in grid_from_text("dense,conv-vae", "8")] == ["dense-8", "conv-vae-8"]
    with pytest.raises(AelabError, match="unknown model 'conv2'"):
        grid_from_text("conv2", "8")
    with pytest.raises(AelabError, match="whole numbers"):
        grid_from_text("conv", "8,x")


def test_two_dimensional_codes_are_drawn_as_they_are(tmp_path, tiny, monkeypatch, capsys):
    import aelab.samplers.fitting as fitting
    from aelab.explain import explain_run
    from aelab.presets import resolve_config
    from aelab.training import train

    lines = []
    run = train(resolve_config("seed", {"latent_dim": 2, "width_dim": 32, "epochs": 1}), tmp_path / "h2",
                data=tiny, quiet=True, log=lines.append)
    assert sum("cannot be negative" in line for line in lines) == 1  # the dense code's ReLU
    monkeypatch.setattr(fitting, "run_data", lambda run: tiny)
    md = explain_run(run.path)
    names = json.loads((md.parent / "explain.json").read_text())["figures"]
    assert "codes_2d.png" in names and "manifold.png" in names and "pca.png" not in names
    assert "cannot be negative" in capsys.readouterr().err
    linear = train(resolve_config("compare", {"architecture": "dense-linear", "latent_dim": 2, "epochs": 1}),
                   tmp_path / "linear", data=tiny, quiet=True, log=lines.append)
    from aelab.plane import write_plane_figures

    paths = write_plane_figures(linear, tiny.test_images, tiny.test_labels, tmp_path / "fig")
    assert [p.name for p in paths] == ["codes_2d.png", "manifold.png"]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert sum("cannot be negative" in line for line in lines) == 1
