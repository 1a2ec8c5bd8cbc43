"""The optional extras (`explore`, `onnx`, `tensorboard`) and the install line that works here.

    install_hint("onnx")   # "pip install -e '/path/to/checkout[onnx]'" in a source checkout,
                           # "pip install 'aelab[onnx]'" for an installed package
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """The pip command that adds `extra` to this installation of aelab."""
    checkout = Path(__file__).resolve().parents[2]  # src/aelab/extras.py -> the checkout
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "aelab").is_dir():
        return f"pip install -e '{checkout}[{extra}]'"
    return f"pip install 'aelab[{extra}]'"
