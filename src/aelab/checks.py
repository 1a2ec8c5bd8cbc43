"""The one finiteness check: is every value of a tensor or array a real number?

    require_finite(codes, "codes contain NaN or inf; check the encoder output")
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import AelabError

__all__ = ["is_finite", "require_finite"]


def is_finite(x: Any) -> bool:
    """True when every value of `x` (a tensor, an array or a number) is finite."""
    if torch.is_tensor(x):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    arr = np.asarray(x)
    return arr.dtype.kind not in "fc" or bool(np.isfinite(arr).all())


def require_finite(x: Any, message: str, error: type[AelabError] = AelabError) -> Any:
    """Return `x`, or raise `error(message)` when it holds a NaN or an infinity."""
    if not is_finite(x):
        raise error(message)
    return x
