"""ONNX export: encoder.onnx and decoder.onnx run in onnxruntime and match PyTorch within 1e-5."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch

from aelab import resolve_config
from aelab.cli import main
from aelab.errors import AelabError
from aelab.export import export_onnx
from aelab.training import train

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# Max abs difference the issue asks for. Measured after one epoch: up to 5e-6 on codes (|code| up
# to 6) and 1.2e-6 on images at batch 37; PyTorch itself differs by 4e-6 between batch sizes 1 and
# 37 (float32 summation order), and the exporter folds each BatchNorm into its Gemm.
TOLERANCE = 1e-5


def _train(tmp_path_factory, data, preset: str):
    out = tmp_path_factory.mktemp(preset) / "run"
    return train(resolve_config(preset, {"epochs": 1, "device": "cpu"}), out, data=data, quiet=True,
                 log=lambda s: None)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, small_mnist):
    return _train(tmp_path_factory, small_mnist, "seed")


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check(run, folder, images: torch.Tensor) -> None:
    encoder, decoder = _session(folder / "encoder.onnx"), _session(folder / "decoder.onnx")
    for n in (1, 37):  # one exported graph, two batch sizes: the batch axis is dynamic
        x = images[:n].reshape(n, 784).float() / 255
        (codes,) = encoder.run(["code"], {"image": x.numpy()})
        expected = run.encode(x).numpy()
        assert codes.shape == expected.shape == (n, run.latent_dim)
        assert np.abs(codes - expected).max() <= TOLERANCE
        (out,) = decoder.run(["image"], {"code": expected})
        assert out.shape == (n, 784)
        assert np.abs(out - run.decode(expected).reshape(n, 784).numpy()).max() <= TOLERANCE


def test_cli_export_matches_pytorch(ae_run, small_mnist, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(ae_run.path), "--onnx", str(out)]) == 0
    assert "encoder.onnx" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx"]
    for name, (inp, outp) in {"encoder.onnx": ("image", "code"), "decoder.onnx": ("code", "image")}.items():
        graph = onnx.load(str(out / name)).graph
        assert [i.name for i in graph.input] == [inp] and [o.name for o in graph.output] == [outp]
        batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic, not fixed
    _check(ae_run, out, small_mnist.test_images)


def test_vae_export_uses_posterior_mean(tmp_path_factory, small_mnist, tmp_path):
    tiny = dataclasses.replace(small_mnist, train_images=small_mnist.train_images[:512],
                               train_labels=small_mnist.train_labels[:512])
    run = _train(tmp_path_factory, tiny, "vae")
    paths = export_onnx(run.path, tmp_path)
    assert [p.name for p in paths] == ["encoder.onnx", "decoder.onnx"]
    _check(run, tmp_path, small_mnist.test_images)


def test_missing_run_is_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aelab: error: ") and err.count("\n") == 1


def test_missing_onnx_package_is_clear(ae_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    with pytest.raises(AelabError, match=r"\[onnx\]'"):
        export_onnx(ae_run.path, tmp_path)
