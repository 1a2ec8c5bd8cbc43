"""Building blocks shared by the model families.

    dense(784, 512)            # Linear + BatchNorm1d + ReLU, the tutorial's block
    conv(1, 32, stride=2)      # 3x3 Conv2d + BatchNorm2d + ReLU: 28x28 -> 14x14
    up(64, 32)                 # ConvTranspose2d + BatchNorm2d + ReLU: 7x7 -> 14x14
    activation("sigmoid")      # a named output activation
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry

__all__ = ["ACTIVATIONS", "activation", "conv", "dense", "up"]

ACTIVATIONS: Registry[type[nn.Module]] = Registry("output activation")
ACTIVATIONS.add("relu", nn.ReLU, "ReLU: the tutorial's 2nd try")
ACTIVATIONS.add("none", nn.Identity, "no activation: the tutorial's 1st try")
ACTIVATIONS.add("sigmoid", nn.Sigmoid, "sigmoid: pixels in (0, 1)")


def activation(name: str) -> nn.Module:
    return ACTIVATIONS.get(name)()


def dense(num_in: int, num_out: int, activation_name: str = "relu") -> nn.Sequential:
    """Linear + BatchNorm1d + activation: the tutorial's building block."""
    return nn.Sequential(nn.Linear(num_in, num_out), nn.BatchNorm1d(num_out), activation(activation_name))


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 Conv2d (padding 1; stride 2 halves the side) + BatchNorm2d + ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


def up(c_in: int, c_out: int) -> nn.Sequential:
    """4x4 ConvTranspose2d with stride 2 (doubles the side) + BatchNorm2d + ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())
