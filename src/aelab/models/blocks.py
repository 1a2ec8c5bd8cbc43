"""Building blocks shared by the model families.

    dense(784, 512)            # Linear + BatchNorm1d + ReLU, the tutorial's block
    activation("sigmoid")      # a named output activation
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry

__all__ = ["ACTIVATIONS", "activation", "dense"]

ACTIVATIONS: Registry[type[nn.Module]] = Registry("output activation")
ACTIVATIONS.add("relu", nn.ReLU, "ReLU: the tutorial's 2nd try")
ACTIVATIONS.add("none", nn.Identity, "no activation: the tutorial's 1st try")
ACTIVATIONS.add("sigmoid", nn.Sigmoid, "sigmoid: pixels in (0, 1)")


def activation(name: str) -> nn.Module:
    return ACTIVATIONS.get(name)()


def dense(num_in: int, num_out: int, activation_name: str = "relu") -> nn.Sequential:
    """Linear + BatchNorm1d + activation: the tutorial's building block."""
    return nn.Sequential(nn.Linear(num_in, num_out), nn.BatchNorm1d(num_out), activation(activation_name))
