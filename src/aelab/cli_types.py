"""The argparse types of aelab's flags and their bounds, shared by `aelab.cli` and `aelab.cli_compare`.

    p.add_argument("--n", type=positive(int, MAX_SAMPLES))
    p.add_argument("--seed", type=seed)

A value out of bounds is a usage error (exit 2) that names the bound. The bounds restate
aelab.config's and aelab.checks' so that `--help` needs no torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["MAX_SAMPLES", "MAX_COMPONENTS", "MAX_EPOCHS", "MAX_BATCH", "MAX_LATENT", "MAX_THREADS",
           "positive", "whole", "count", "seed", "threads"]

MAX_SAMPLES = 100_000   # aelab.checks.MAX_SAMPLES
MAX_COMPONENTS = 10_000
MAX_EPOCHS, MAX_BATCH, MAX_LATENT, MAX_THREADS = 100_000, 65_536, 1024, 1024  # aelab.config's bounds


def positive(kind: type, most: int | float | None = None) -> Callable[[str], int | float]:
    """An argparse type: a positive `kind`, at most `most`."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        if most is not None and not value <= most:
            raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {most:,})")
        return value
    return parse


def whole(lo: int, hi: int, hi_text: str | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `lo` to `hi` (named `hi_text` in the message)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text!r} must be from {lo} to {hi_text or f'{hi:,}'}")
        return value
    return parse


def count(most: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 0 to `most`."""
    return whole(0, most)


seed = whole(0, 2**32 - 1, "2**32 - 1")  # a seed numpy and torch both take
_thread_count = whole(1, MAX_THREADS)


def threads(text: str) -> int | str:
    """An argparse type: "auto" or a whole number from 1 to MAX_THREADS."""
    if text == "auto":
        return text
    try:
        return _thread_count(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} must be 'auto' or a whole number from 1 to "
                                         f"{MAX_THREADS:,}") from None
