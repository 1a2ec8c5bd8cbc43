"""ONNX export of a run's encoder and decoder, each with a dynamic batch axis.

    aelab export runs/seed --onnx onnx/

    encoder.onnx   input "image" float32 (batch, 784) in [0, 1] -> output "code" (batch, latent_dim)
    decoder.onnx   input "code" (batch, latent_dim) -> output "image" (batch, 784), clipped to [0, 1]

The models are exported in eval mode (BatchNorm uses its running statistics) with torch's
dynamo-based exporter, so they compute what `Run.encode` and `Run.decode` compute.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import AelabError, RunError
from .extras import install_hint
from .files import atomic_write_bytes, writable_dir
from .run import load_run

__all__ = ["export_onnx"]


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image)  # (batch, 784) -> (batch, latent_dim)


class _Decoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.model.decode(code).clamp(0, 1)  # (batch, latent_dim) -> (batch, 784)


def _onnx_bytes(module: nn.Module, example: torch.Tensor, name_in: str, name_out: str) -> bytes:
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecation chatter from the exporter
        program = torch.onnx.export(module.eval(), (example,), dynamo=True, verbose=False,
                                    input_names=[name_in], output_names=[name_out],
                                    dynamic_shapes={name_in: {0: batch}})
    return program.model_proto.SerializeToString()


def export_onnx(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write `out_dir/encoder.onnx` and `out_dir/decoder.onnx` for the run in `run_dir`.

    Raises `AelabError` when the run is missing or unfinished, or the onnx packages are absent.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        raise AelabError("ONNX export needs the onnx and onnxscript packages: "
                         + install_hint("onnx")) from None
    run = load_run(run_dir, device="cpu")
    out = Path(out_dir)
    try:
        writable_dir(out)
        if not os.access(out, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise AelabError(f"cannot create {out}: {e.strerror or e}") from None
    # the exporter logs a warning per torchvision operator it cannot register; none is used here
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        models = {
            "encoder.onnx": _onnx_bytes(_Encoder(run.model), torch.rand(2, run.config.model.image_dim),
                                        "image", "code"),
            "decoder.onnx": _onnx_bytes(_Decoder(run.model), torch.rand(2, run.latent_dim),
                                        "code", "image"),
        }
    finally:
        registration.setLevel(level)
    for data in models.values():
        onnx.checker.check_model(onnx.load_from_string(data))
    return write_pair(out, models)


def write_pair(out: Path, files: dict[str, bytes]) -> list[Path]:
    """Write files that belong together (an encoder and its decoder) so they never mix runs.

    All are written and fsynced in a temporary folder inside `out` first; only when every one is
    complete are they renamed into place (renames need no space), so a full disk leaves the old
    pair as it was.
    """
    try:
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    except OSError as e:
        raise RunError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        for name, data in files.items():
            atomic_write_bytes(staging / name, data)
        for name in files:
            os.replace(staging / name, out / name)
    except OSError as e:
        raise RunError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in files]
