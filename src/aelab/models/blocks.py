"""Building blocks shared by the model families.

    dense(784, 512)            # Linear + BatchNorm1d + ReLU, the tutorial's block
    conv(1, 32, stride=2)      # 3x3 Conv2d + BatchNorm2d + ReLU: 28x28 -> 14x14
    up(64, 32)                 # ConvTranspose2d + BatchNorm2d + ReLU: 7x7 -> 14x14
    activation("sigmoid")      # a named output activation
    narrow_widths_warning(cfg) # the caution when the hidden widths follow a small code (w = h)
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry

__all__ = ["ACTIVATIONS", "TUTORIAL_WIDTH", "activation", "conv", "dense", "narrow_widths_warning", "up"]

TUTORIAL_WIDTH = 128  # w of the tutorial's hidden widths 4w, 2w = 512, 256 (and of `aelab compare`'s)
NARROW_CODE = 8       # below it, w = h leaves fewer than 32 units in the first hidden layer: warned

ACTIVATIONS: Registry[type[nn.Module]] = Registry("output activation")
ACTIVATIONS.add("relu", nn.ReLU, "ReLU: the tutorial's 2nd try")
ACTIVATIONS.add("none", nn.Identity, "no activation: the tutorial's 1st try")
ACTIVATIONS.add("sigmoid", nn.Sigmoid, "sigmoid: pixels in (0, 1)")


def activation(name: str) -> nn.Module:
    return ACTIVATIONS.get(name)()


def dense(num_in: int, num_out: int, activation_name: str = "relu") -> nn.Sequential:
    """Linear + BatchNorm1d + activation: the tutorial's building block."""
    return nn.Sequential(nn.Linear(num_in, num_out), nn.BatchNorm1d(num_out), activation(activation_name))


def narrow_widths_warning(cfg) -> str | None:
    """For the dense families: a caution when `width_dim` is unset and the code is so small
    (h < NARROW_CODE) that the hidden widths 4w, 2w that follow it (w = h) are tiny, e.g.
    784-8-4-2 for h = 2 (15,054 parameters), else None.

    The default stays w = h, so that saved runs keep their networks; the warning names the widths
    and the flag that gives the tutorial's.
    """
    h = cfg.latent_dim
    if cfg.width_dim is not None or h >= NARROW_CODE:
        return None
    return (f"the hidden widths follow the code size (w = h = {h}): {cfg.image_dim}-{4 * h}-{2 * h}-{h}, "
            f"narrower than the tutorial's {cfg.image_dim}-{4 * TUTORIAL_WIDTH}-{2 * TUTORIAL_WIDTH}-{h}; "
            f"add --width-dim {TUTORIAL_WIDTH} for its {4 * TUTORIAL_WIDTH}-{2 * TUTORIAL_WIDTH} widths "
            f"(as aelab compare does)")


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 Conv2d (padding 1; stride 2 halves the side) + BatchNorm2d + ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


def up(c_in: int, c_out: int) -> nn.Sequential:
    """4x4 ConvTranspose2d with stride 2 (doubles the side) + BatchNorm2d + ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())
