"""Request checking: turn a client's JSON body into checked numpy arrays, or one clear `RequestError`.

Everything the page (or anyone on the port) sends passes through here before it reaches the model:
the body size is capped, NaN / Infinity are refused at parse time, every number is a real JSON
number (no bools, strings or nulls), arrays have the run's shapes and stay within small limits.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

MAX_BODY_BYTES = 256 * 1024  # a 28x28 drawing as JSON floats is about 16 KiB
MAX_CODES = 64               # codes decoded in one request
MAX_ABS_CODE = 1e6           # beyond this float32 decoding is meaningless (and near overflow)
CODE_SIZE = " (the run's code size)"


class RequestError(Exception):
    """A bad request (or a run that is gone): answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _refuse_constant(name: str) -> float:
    raise RequestError(400, f"{name} is not allowed: send finite numbers only")


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object in `body`; 413 when too large, 400 when not a JSON object."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, f"request body over {MAX_BODY_BYTES // 1024} KiB")
    if not body.strip():
        return {}
    try:
        obj = json.loads(body, parse_constant=_refuse_constant)
    except RequestError:
        raise
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"request body is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RequestError(400, "request body must be a JSON object")
    return obj


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _vector(v: Any, name: str, length: int, what: str = "") -> list:
    if not isinstance(v, list) or not all(_is_number(x) for x in v):
        raise RequestError(400, f"{name} must be a list of numbers")
    if len(v) != length:
        raise RequestError(400, f"{name} needs {length} numbers{what}, got {len(v)}")
    return v


def _array(v: list, name: str, limit: float) -> np.ndarray:
    """Checked numbers -> float64 array; an integer too large for a float is refused like inf."""
    try:
        return np.asarray(v, dtype=np.float64)
    except OverflowError:
        raise RequestError(400, f"{name} must hold finite numbers of magnitude at most {limit:g}") from None


def _finite(arr: np.ndarray, name: str, limit: float) -> np.ndarray:
    if not np.isfinite(arr).all() or (arr.size and float(np.abs(arr).max()) > limit):
        raise RequestError(400, f"{name} must hold finite numbers of magnitude at most {limit:g}")
    return arr


def code(obj: dict, key: str, latent_dim: int) -> np.ndarray:
    """One code (latent_dim,) float32 from `obj[key]`."""
    if key not in obj:
        raise RequestError(400, f"missing '{key}': a code of {latent_dim} numbers")
    v = _vector(obj[key], f"'{key}'", latent_dim, CODE_SIZE)
    return _finite(_array(v, f"'{key}'", MAX_ABS_CODE), f"'{key}'", MAX_ABS_CODE).astype(np.float32)


def codes(obj: dict, key: str, latent_dim: int) -> np.ndarray:
    """Codes (n, latent_dim) float32 from `obj[key]`, a list of 1 to MAX_CODES codes."""
    v = obj.get(key)
    if not isinstance(v, list) or not v:
        raise RequestError(400, f"'{key}' must be a non-empty list of codes, each {latent_dim} numbers")
    if len(v) > MAX_CODES:
        raise RequestError(400, f"'{key}' holds {len(v)} codes; at most {MAX_CODES} per request")
    rows = [_vector(c, f"each code in '{key}'", latent_dim, CODE_SIZE) for c in v]
    return _finite(_array(rows, f"'{key}'", MAX_ABS_CODE), f"'{key}'", MAX_ABS_CODE).astype(np.float32)


def image(obj: dict, key: str = "image") -> np.ndarray:
    """One image (28, 28) float32 in [0, 1] from `obj[key]`: 784 numbers, flat or as 28 rows of 28."""
    v = obj.get(key)
    if isinstance(v, list) and len(v) == 28 and all(isinstance(r, list) for r in v):
        rows = [_vector(r, f"each row of '{key}'", 28) for r in v]
        arr = _array(rows, f"'{key}'", 1)
    elif isinstance(v, list):
        arr = _array(_vector(v, f"'{key}'", 784), f"'{key}'", 1)
    else:
        raise RequestError(400, f"'{key}' must be 784 pixel values in [0, 1] (flat or 28 rows of 28)")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise RequestError(400, f"'{key}' pixel values must lie in [0, 1]")
    return arr.reshape(28, 28).astype(np.float32)


def integer(obj: dict, key: str, default: int, low: int, high: int) -> int:
    """An int in [low, high] from `obj[key]` (absent: `default`)."""
    v = obj.get(key, default)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if type(v) is not int or not low <= v <= high:
        raise RequestError(400, f"'{key}' must be an integer from {low} to {high}")
    return v


def flag(obj: dict, key: str, default: bool) -> bool:
    v = obj.get(key, default)
    if type(v) is not bool:
        raise RequestError(400, f"'{key}' must be true or false")
    return v


def choice(obj: dict, key: str, options: list[str]) -> str:
    v = obj.get(key)
    if v not in options or not isinstance(v, str):
        raise RequestError(400, f"'{key}' must be one of {', '.join(options)}")
    return v
