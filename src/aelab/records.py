"""The JSON records aelab writes into a run folder, checked when they are read back.

A run folder is untrusted input: any of its files may have been edited, truncated or forged.
Each reader here takes the parsed JSON and returns it only when every value has the type (and
range) aelab wrote, else raises one `RunError` naming the file and the value.

    records = check_metrics(json_lines, "runs/a/metrics.jsonl")
    info = check_data_record(saved["data"], "runs/a/config.json")
"""

from __future__ import annotations

import math
from typing import Any

from .errors import RunError

__all__ = ["check_metrics", "check_data_record", "check_evaluation", "is_number"]

# metrics.jsonl fields with a known type: whole numbers, and finite real numbers (None allowed)
_WHOLE = ("epoch", "steps")
MAX_EPOCHS = 100_000


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metrics(records: Any, where: str) -> list[dict]:
    """metrics.jsonl records: dicts with epochs 1, 2, ...; every other value a finite number or null."""
    if not isinstance(records, list) or len(records) > MAX_EPOCHS:
        raise RunError(f"{where}: not a list of epoch records")
    for i, r in enumerate(records, start=1):
        if not isinstance(r, dict):
            raise RunError(f"{where}: record {i} is not an object")
        for key in _WHOLE:
            if key in r and not (isinstance(r[key], int) and not isinstance(r[key], bool)):
                raise RunError(f"{where}: record {i}: {key}={str(r[key])[:40]!r} is not a whole number")
        if r.get("epoch") != i:
            raise RunError(f"{where}: record {i} has epoch {str(r.get('epoch'))[:40]!r}, expected {i}")
        for key, value in r.items():
            if not isinstance(key, str) or not (value is None or is_number(value)):
                raise RunError(f"{where}: record {i}: {str(key)[:40]}={str(value)[:40]!r} is not a number")
    return records


def check_data_record(info: Any, where: str) -> dict:
    """The `data` record beside a run's config: name, source, file checksums, image counts."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise RunError(f"{where}: 'data' is not an object")
    for key in ("name", "source"):
        if key in info and not isinstance(info[key], str):
            raise RunError(f"{where}: data.{key} is not text")
    for key in ("n_train", "n_test"):
        if key in info and not (isinstance(info[key], int) and not isinstance(info[key], bool)
                                and 0 <= info[key] <= 10**8):
            raise RunError(f"{where}: data.{key}={str(info[key])[:40]!r} is not an image count")
    files = info.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in files.items()):
        raise RunError(f"{where}: data.files is not a map of file names to checksums")
    return info


def check_evaluation(result: Any, where: str) -> dict:
    """evaluation.json: an object whose `reconstruction` and `samples` rows are objects of finite
    numbers (a score is never NaN: `evaluate` writes none, so one here is damage), but for a PSNR
    of +inf (a perfect reconstruction)."""
    if not isinstance(result, dict):
        raise RunError(f"{where} is not an object")
    for section in ("reconstruction", "samples"):
        rows = result.get(section, {})
        if not isinstance(rows, dict) or not all(isinstance(row, dict) for row in rows.values()):
            raise RunError(f"{where}: {section} is not a table of rows")
        for name, row in rows.items():  # PSNR of identical images is +inf, honestly (metrics.py)
            if not all(isinstance(k, str) and (is_number(v) or (k.endswith("psnr") and v == math.inf))
                       for k, v in row.items()):
                raise RunError(f"{where}: {section} row {str(name)[:40]!r} is not an object of finite "
                               f"numbers")
    return result


def check_final(record: Any, where: str) -> dict:
    """final.json: the epoch count, the split parts as objects of numbers, the median epoch seconds."""
    if not isinstance(record, dict):
        raise RunError(f"{where} is not an object")
    if not (isinstance(record.get("epoch"), int) and not isinstance(record["epoch"], bool)
            and 1 <= record["epoch"] <= MAX_EPOCHS):
        raise RunError(f"{where}: epoch={str(record.get('epoch'))[:40]!r} is not an epoch count")
    for split in ("train", "valid", "test"):
        part = record.get(split)
        if not isinstance(part, dict) or not all(isinstance(k, str) and (v is None or is_number(v))
                                                 for k, v in part.items()):
            raise RunError(f"{where}: {split} is not an object of numbers")
    recon = record.get("reconstruction", {})  # absent in runs from before it was recorded
    if not isinstance(recon, dict) or not all(is_number(v) for k, v in recon.items() if k.endswith("_mse")):
        raise RunError(f"{where}: reconstruction is not an object of numbers")
    if not is_number(record.get("seconds_per_epoch_median")):
        raise RunError(f"{where}: seconds_per_epoch_median is not a number")
    return record
