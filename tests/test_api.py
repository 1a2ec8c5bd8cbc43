"""The Python API: aelab.train -> Run, aelab.load_run, encode/decode/reconstruct/sample, Datasets.

docs/api.md's Python example runs here as written (on a 3,000-image slice instead of full MNIST).
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import aelab
from aelab.errors import AelabError
from aelab.run import Run

README = Path(__file__).resolve().parents[1] / "docs" / "api.md"  # the Python API page the README links


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_mnist) -> Run:
    out = tmp_path_factory.mktemp("api") / "run"
    return aelab.train(aelab.resolve_config("seed", {"epochs": 1, "device": "cpu"}), out,
                       data=small_mnist, quiet=True, log=lambda s: None)


def test_train_returns_a_run_and_load_run_gives_it_back(run, small_mnist):
    assert isinstance(run, Run) and len(run.metrics) == 1
    loaded = aelab.load_run(run.path)
    images = small_mnist.test_images[:10]                # (10, 28, 28) uint8
    codes = loaded.encode(images)
    assert codes.shape == (10, 128) and codes.dtype == torch.float32
    assert torch.equal(codes, run.encode(images))        # the same weights
    assert torch.equal(codes, loaded.encode(images.float() / 255))  # uint8 or float in [0, 1]
    decoded = loaded.decode(codes)
    assert decoded.shape == (10, 28, 28) and 0 <= decoded.min() and decoded.max() <= 1
    assert torch.equal(loaded.reconstruct(images), decoded)
    mse = ((decoded - images.float() / 255) ** 2).mean().item()
    assert mse < 0.1                                     # it learned something in one epoch
    samples = loaded.sample(7, sampler="normal", seed=1)
    assert samples.shape == (7, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, loaded.sample(7, sampler="normal", seed=1))


@pytest.mark.parametrize("overrides", [{"preset": "seed"}, {"preset": "vae"}])
def test_final_json_reconstruction_is_what_load_run_reconstruct_gives(tmp_path, small_mnist, run, overrides):
    # an outside check measures reconstructions through load_run: final.json's `reconstruction`
    # must be that number. The loss parts are not: the seed AE's ReLU output exceeds 1 (clipped
    # here), a VAE's loss decodes one sampled code (here its posterior mean)
    import json

    if overrides["preset"] == "seed":
        path = run.path
    else:
        path = tmp_path / "vae"
        aelab.train(aelab.resolve_config("vae", {"epochs": 1, "device": "cpu"}), path, data=small_mnist,
                    quiet=True, log=lambda s: None)
    final = json.loads((Path(path) / "final.json").read_text())
    images = small_mnist.test_images
    mse = ((aelab.load_run(path).reconstruct(images).double() - images.double() / 255) ** 2).mean().item()
    assert final["reconstruction"]["test_mse"] == pytest.approx(mse, rel=1e-6)
    assert final["reconstruction"]["valid_mse"] == final["reconstruction"]["test_mse"]  # valid_fraction 0
    assert final["test"]["mse"] != pytest.approx(mse, rel=1e-3)  # the loss's own term differs: unclipped


def test_odd_api_calls_are_aelab_errors(run, tmp_path, small_mnist):
    import numpy as np

    assert run.reconstruct(np.zeros((0, 28, 28), np.uint8)).shape == (0, 28, 28)  # an empty batch
    with pytest.raises(AelabError, match=r"\[1\.0001, 1\.0001\]"):  # not rounded to "[1, 1]"
        run.encode(np.full((2, 784), 1.0001, np.float32))
    conv = aelab.train(aelab.resolve_config("seed", {"epochs": 1, "device": "cpu", "architecture": "conv"}),
                       tmp_path / "conv", data=small_mnist, quiet=True, log=lambda s: None)
    with pytest.raises(AelabError, match="preactivation=True needs a code behind a final ReLU"):
        conv.encode(small_mnist.test_images[:2], preactivation=True)


@pytest.mark.parametrize("call, words", [
    (lambda run: run.encode([[1, 2], [3]]), "numeric array of images, got list"),
    (lambda run: run.encode(None), "got NoneType"),
    (lambda run: run.encode(torch.zeros(2, 784).to_sparse()), "dense tensor"),
    (lambda run: run.encode(torch.zeros(2, 784), batch_size=0), "batch_size=0"),
    (lambda run: run.decode(torch.zeros(2, 128, dtype=torch.complex64)), "real numeric array"),
    (lambda run: run.sample(2, seed=-1), "seed=-1"),
    (lambda run: run.sample(2, seed=None), "seed=None"),
    (lambda run: run.sample(2, seed=2**32), "seed=4294967296"),
    (lambda run: aelab.load_run(None), "got NoneType"),
    (lambda run: aelab.load_run("x" * 5000), "cannot read"),
    (lambda run: aelab.load_run(run.path, device="tpu"), "device 'tpu'"),
    (lambda run: aelab.load_run(run.path, device=5), "device 5"),
    (lambda run: aelab.resolve_config("seed", [1]), "overrides must be a dict"),
])
def test_hostile_api_arguments_are_aelab_errors(run, call, words):
    with pytest.raises(AelabError, match=re.escape(words)):
        call(run)


def test_what_torch_and_numpy_users_pass_is_accepted(run, small_mnist):
    from pathlib import PurePosixPath

    import numpy as np
    images = small_mnist.test_images[:3]
    assert aelab.load_run(run.path, device=torch.device("cpu")).device == torch.device("cpu")
    assert aelab.load_run(PurePosixPath(run.path).as_posix(), device="cpu").path == run.path
    assert torch.allclose(run.encode(images, batch_size=np.int64(2)), run.encode(images), atol=1e-6)
    many = small_mnist.test_images[:600]  # a uint8 batch size overflowed in the slices (200 + 200)
    assert torch.allclose(run.encode(many, batch_size=np.uint8(200)), run.encode(many), atol=1e-6)
    assert torch.equal(run.sample(2, seed=np.uint32(7)), run.sample(2, seed=7))


def test_a_cuda_device_index_the_machine_lacks_is_refused(monkeypatch):
    from aelab.run import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(AelabError, match="has 1 CUDA device"):
        pick_device("cuda:7")


def test_a_numpy_view_with_negative_strides_is_ordinary_input(run, small_mnist):
    images = small_mnist.test_images[:5].numpy()
    assert torch.equal(run.encode(images[::-1]), run.encode(images[::-1].copy()))


def test_dataset_works_with_a_dataloader(small_mnist):
    dataset = small_mnist.torch_dataset("train")
    assert isinstance(dataset, torch.utils.data.Dataset) and len(dataset) == 3000
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    x, y = next(iter(loader))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (256,) and y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))
    assert sum(len(b) for b, _ in loader) == 3000


def test_python_dash_m_aelab():
    done = subprocess.run([sys.executable, "-m", "aelab", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("train", "sample", "report", "export"):
        assert command in done.stdout


def test_public_api_is_typed():
    functions = [aelab.train, aelab.load_run, aelab.resolve_config, Run.encode, Run.decode,
                 Run.reconstruct, Run.sample]
    for fn in functions:
        sig = inspect.signature(fn)
        missing = [name for name, p in sig.parameters.items()
                   if name != "self" and p.annotation is inspect.Parameter.empty]
        assert not missing, f"{fn.__qualname__}: parameters without a type hint: {missing}"
        assert sig.return_annotation is not inspect.Signature.empty, f"{fn.__qualname__}: no return type"


def test_readme_python_example_runs(tmp_path, monkeypatch, small_mnist):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    examples = [b for b in blocks if "aelab.train(" in b and "load_run(" in b]
    assert examples, "docs/api.md needs a ```python example that calls aelab.train and aelab.load_run"
    monkeypatch.chdir(tmp_path)  # the example writes its run folder relative to the cwd
    monkeypatch.setattr("aelab.training.load_dataset", lambda *a, **k: small_mnist)
    monkeypatch.setattr("aelab.data.load_dataset", lambda *a, **k: small_mnist)
    namespace: dict = {}
    exec(compile(examples[0], str(README), "exec"), namespace)
    runs = [v for v in namespace.values() if isinstance(v, Run)]
    assert runs and all(r.path.is_dir() for r in runs)
