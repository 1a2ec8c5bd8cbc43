"""Hostile input: random, cut, flipped and lying bytes against the checkpoint loader and the IDX reader.

The checkpoint under attack is a real one, written by a real (tiny) training run on real MNIST.
Whatever the bytes, `load_checkpoint` raises `RunError` (aelab's own) or, when a change is
harmless (JSON whitespace), returns exactly what was saved. Hypothesis runs deterministically
(`derandomize=True`) with a fixed number of examples, so the counts in the README are exact.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_save

from aelab.checkpoint import FORMAT, load_checkpoint, save_checkpoint, tensors_digest
from aelab.cli import main
from aelab.data import read_idx
from aelab.errors import DataError, DivergedError, RunError
from aelab.presets import resolve_config
from aelab.run import load_run
from aelab.training import train
from helpers_reliability import SHARED_MNIST, message_lines, write_small_idx_dir

EXAMPLES = 200  # per property; README counts them
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def tiny_run(data_dir: Path, out: Path, latent_dim: int = 2, epochs: int = 1) -> Path:
    cfg = resolve_config("seed", {"epochs": epochs, "latent_dim": latent_dim, "batch_size": 32, "seed": 0,
                                  "device": "cpu", "data_dir": str(data_dir)})
    train(cfg, out, quiet=True, log=lambda line: None)
    return out


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """300 real training and 100 real test images as an IDX folder (so resume finds them again)."""
    return write_small_idx_dir(tmp_path_factory.mktemp("idx") / "mnist-300", n_train=300, n_test=100)


@pytest.fixture(scope="module")
def real_run(tiny_data, tmp_path_factory) -> Path:
    return tiny_run(tiny_data, tmp_path_factory.mktemp("fuzz") / "run")


class Checkpoint(tuple):
    """(file bytes, tensors, state); a short repr keeps Hypothesis's reports readable."""

    def __repr__(self) -> str:
        return f"<checkpoint of {len(self[0])} bytes>"


@pytest.fixture(scope="module")
def original(real_run) -> Checkpoint:
    """(file bytes, tensors, state) of the real checkpoint."""
    path = real_run / "checkpoint.safetensors"
    tensors, state = load_checkpoint(path)
    return Checkpoint((path.read_bytes(), tensors, state))


def header_of(blob: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", blob[:8])[0]
    return n, json.loads(blob[8:8 + n])


def with_header(blob: bytes, header: dict) -> bytes:
    """The same tensor bytes behind a new JSON header (padded to 8 bytes as safetensors does)."""
    n, _ = header_of(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n:]


def load_bytes(tmp_path_factory, blob: bytes):
    path = tmp_path_factory.mktemp("bytes") / "checkpoint.safetensors"
    path.write_bytes(blob)
    return path, load_checkpoint(path)


def refused_or_identical(tmp_path_factory, blob: bytes, original) -> None:
    """The property: RunError naming the file, or exactly the original tensors and state."""
    try:
        path, (tensors, state) = load_bytes(tmp_path_factory, blob)
    except RunError as e:
        assert "checkpoint" in str(e) and "\n" not in str(e)
        return
    _, want_tensors, want_state = original
    assert state == want_state and tensors.keys() == want_tensors.keys()
    for k, t in tensors.items():
        assert t.dtype == want_tensors[k].dtype and torch.equal(t, want_tensors[k]), k


# ---------------------------------------------------------------- random and cut bytes


@FUZZ
@given(blob=st.binary(max_size=4096))
def test_random_bytes_are_refused(tmp_path_factory, blob):
    with pytest.raises(RunError):
        load_bytes(tmp_path_factory, blob)


@FUZZ
@given(header_len=st.integers(0, 2**64 - 1), body=st.binary(max_size=512))
def test_random_header_lengths_are_refused(tmp_path_factory, header_len, body):
    with pytest.raises(RunError):
        load_bytes(tmp_path_factory, struct.pack("<Q", header_len) + body)


@FUZZ
@given(data=st.data())
def test_truncated_checkpoint_is_refused(tmp_path_factory, original, data):
    blob = original[0]
    n, _ = header_of(blob)
    cut = data.draw(st.one_of(st.integers(0, n + 16), st.integers(0, len(blob) - 1)), label="cut")
    with pytest.raises(RunError, match="corrupt or truncated|failed its checksum"):
        load_bytes(tmp_path_factory, blob[:cut])


@pytest.mark.parametrize("where", ["0", "7", "8", "9", "header-1", "header", "header+1", "end-1"])
def test_truncated_at_the_boundaries_is_refused(tmp_path_factory, original, where):
    blob = original[0]
    header_end = 8 + header_of(blob)[0]
    cut = {"header-1": header_end - 1, "header": header_end, "header+1": header_end + 1,
           "end-1": len(blob) - 1}.get(where) or int(where)
    with pytest.raises(RunError, match="corrupt or truncated"):
        load_bytes(tmp_path_factory, blob[:cut])


# ---------------------------------------------------------------- flipped and mutated bytes


@FUZZ
@given(data=st.data())
def test_flipped_bytes_are_refused_or_harmless(tmp_path_factory, original, data):
    blob = bytearray(original[0])
    n, _ = header_of(original[0])
    for _ in range(data.draw(st.integers(1, 3), label="flips")):
        at = data.draw(st.one_of(st.integers(0, 8 + n - 1), st.integers(0, len(blob) - 1)), label="at")
        blob[at] ^= data.draw(st.integers(1, 255), label="mask")
    refused_or_identical(tmp_path_factory, bytes(blob), original)


def _mutations(header: dict) -> st.SearchStrategy:
    names = sorted(k for k in header if k != "__metadata__")
    meta_keys = sorted(header["__metadata__"])

    def set_field(name, field, value):
        def apply(h):
            if name in h:  # not renamed or dropped by an earlier mutation
                h[name][field] = value
        return apply
    tensor_field = st.builds(set_field, st.sampled_from(names), st.just("shape"),
                             st.lists(st.integers(0, 2**40), max_size=4))
    dtype_field = st.builds(set_field, st.sampled_from(names), st.just("dtype"),
                            st.sampled_from(["F32", "F64", "F16", "BF16", "I64", "I32", "U8", "BOOL",
                                             "F8_E4M3", "X"]))
    offsets = st.builds(set_field, st.sampled_from(names), st.just("data_offsets"),
                        st.lists(st.integers(0, 2**40), min_size=0, max_size=3))

    def set_meta(key, value):
        def apply(h):
            h.setdefault("__metadata__", {})[key] = value
        return apply

    def drop(name):
        def apply(h):
            h.pop(name, None)
        return apply

    def rename(name, new):
        def apply(h):
            if name in h:
                h[new] = h.pop(name)
        return apply
    def edit_state(key, value):
        def apply(h):
            meta = h.setdefault("__metadata__", {})
            try:
                state = dict(json.loads(meta.get("state", "")))
            except (ValueError, TypeError):  # an earlier mutation broke it already
                state = {}
            meta["state"] = json.dumps({**state, key: value})
        return apply
    meta = st.builds(set_meta, st.sampled_from(meta_keys), st.text(max_size=40))
    state_edit = st.builds(edit_state,
                           st.sampled_from(["epoch", "step", "epoch_step", "metrics", "param_groups"]),
                           st.one_of(st.integers(-5, 10**6), st.text(max_size=5), st.none()))
    return st.one_of(tensor_field, dtype_field, offsets, meta, state_edit,
                     st.builds(drop, st.sampled_from(names + ["__metadata__"])),
                     st.builds(rename, st.sampled_from(names), st.text(min_size=1, max_size=8)))


@FUZZ
@given(data=st.data())
def test_mutated_header_fields_are_refused_or_harmless(tmp_path_factory, original, data):
    """Well-formed JSON that lies: shapes, dtypes, offsets, names, metadata, the state itself."""
    blob = original[0]
    _, header = header_of(blob)
    for mutate in data.draw(st.lists(_mutations(header), min_size=1, max_size=3), label="mutations"):
        mutate(header)
    refused_or_identical(tmp_path_factory, with_header(blob, header), original)


def test_tampered_state_is_refused(tmp_path_factory, original):
    """The training state lives in metadata; the checksum covers it: epoch 1 -> 7 is caught."""
    blob, _, state = original
    _, header = header_of(blob)
    header["__metadata__"]["state"] = json.dumps({**state, "epoch": 7})
    with pytest.raises(RunError, match="failed its checksum"):
        load_bytes(tmp_path_factory, with_header(blob, header))


def test_older_format_is_refused_by_name(tmp_path_factory, original):
    blob = original[0]
    _, header = header_of(blob)
    header["__metadata__"]["format"] = "aelab-checkpoint-1"
    with pytest.raises(RunError, match=f"not an aelab checkpoint of format {FORMAT}"):
        load_bytes(tmp_path_factory, with_header(blob, header))


# ---------------------------------------------------------------- lying sizes


def lying_files(blob: bytes) -> dict[str, bytes]:
    n, header = header_of(blob)
    name = next(k for k in header if k.startswith("model.") and header[k]["dtype"] == "F32")
    huge_shape = dict(header)
    huge_shape[name] = {"dtype": "F32", "shape": [2**31, 2**31], "data_offsets": [0, 2**64 - 8]}
    huge_but_consistent = dict(header)
    huge_but_consistent[name] = {"dtype": "F32", "shape": [2**30, 4], "data_offsets": [0, 2**34]}
    return {
        "header length 2**63": struct.pack("<Q", 2**63) + blob[8:],
        "header length 2**40": struct.pack("<Q", 2**40) + blob[8:],
        "header length file+1": struct.pack("<Q", len(blob) - 7) + blob[8:],
        "tensor of 2**62 floats": with_header(blob, huge_shape),
        "16 GiB tensor in a small file": with_header(blob, huge_but_consistent),
    }


@pytest.mark.parametrize("case", ["header length 2**63", "header length 2**40", "header length file+1",
                                  "tensor of 2**62 floats", "16 GiB tensor in a small file"])
def test_lying_sizes_are_refused_without_allocating(tmp_path, original, case):
    path = tmp_path / "liar.safetensors"
    path.write_bytes(lying_files(original[0])[case])
    tracemalloc.start()
    try:
        with pytest.raises(RunError) as err:
            load_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # refused by safetensors' header validation, before any tensor exists (an allocation failure
    # would surface as a RuntimeError from torch instead)
    assert "(SafetensorError)" in str(err.value)
    assert peak < 4 * 2**20, f"{peak} bytes traced"


# ---------------------------------------------------------------- nothing non-finite is written


def test_non_finite_tensors_are_never_saved(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"model.w": torch.ones(3)}, {"epoch": 1, "epoch_step": 0})
    before = path.read_bytes()
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(DivergedError, match="model.w became non-finite after epoch 1; .*lower --lr"):
            save_checkpoint(path, {"model.w": torch.tensor([1.0, bad])}, {"epoch": 1, "epoch_step": 0})
    assert path.read_bytes() == before


# ---------------------------------------------------------------- through the command line


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = message_lines(err)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("damage, words", [
    ("truncate", "is corrupt or truncated"),
    ("flip-data", "failed its checksum"),
    ("flip-state", "failed its checksum"),
    ("empty", "is corrupt or truncated"),
])
def test_damaged_checkpoint_is_refused_on_resume(real_run, tmp_path, capsys, damage, words):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    path = run / "checkpoint.safetensors"
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) * 2 // 3]
    elif damage == "flip-data":
        blob[-100] ^= 0x01
    elif damage == "flip-state":
        at = blob.index(b'\\"epoch\\": 1')  # inside the JSON string of the state
        blob[at + len(b'\\"epoch\\": ')] = ord("7")
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 1
    line = one_line(capsys)
    assert line.startswith(f"aelab: error: checkpoint {path} ") and words in line, line


def test_wrong_shape_checkpoint_is_refused_on_resume(real_run, tiny_data, tmp_path, capsys):
    """A checkpoint from a --latent-dim 3 run copied into a --latent-dim 2 run."""
    other = tiny_run(tiny_data, tmp_path / "other", latent_dim=3)
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    shutil.copy(other / "checkpoint.safetensors", run / "checkpoint.safetensors")
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 1
    assert "checkpoint does not fit this model" in one_line(capsys)
    shutil.copy(other / "model.safetensors", run / "model.safetensors")
    with pytest.raises(RunError, match=r"do not fit the run.s config \(size mismatch for encoder\.0\.0\."):
        load_run(run)
    assert main(["sample", str(run), "--n", "4"]) == 1
    assert "size mismatch for encoder.0.0.weight" in one_line(capsys)


def _edit_params(state: dict, edit) -> None:
    groups = [dict(g) for g in state["param_groups"]]
    groups[0]["params"] = edit(list(groups[0]["params"]))
    state["param_groups"] = groups


def _hostile(tensors: dict, state: dict, case: str) -> tuple[dict, dict]:
    """A checkpoint with a valid checksum whose content lies (anyone can recompute SHA-256)."""
    tensors, state = dict(tensors), dict(state)
    mid_epoch = {"epoch": 0, "epoch_step": 3, "metrics": []}
    if case.startswith("perm") or case.startswith("sums") or case == "epoch_step beyond the epoch":
        state.update(mid_epoch)
        tensors["epoch.perm"] = torch.randperm(300)
        tensors["epoch.sums"] = torch.zeros(3, dtype=torch.float64)
    edits = {
        "epoch not a number": lambda: state.update(epoch="x"),
        "param_groups empty": lambda: state.update(param_groups=[]),
        "rng state wrong": lambda: tensors.update({"rng.torch": torch.zeros(3)}),
        "metrics a string": lambda: state.update(metrics="ab"),
        "metrics not records": lambda: state.update(metrics=[1]),
        "epoch far beyond metrics": lambda: state.update(epoch=10**9),
        "perm out of range": lambda: tensors.update({"epoch.perm": torch.full((300,), 10**6)}),
        "perm missing": lambda: tensors.pop("epoch.perm"),
        "sums wrong shape": lambda: tensors.update({"epoch.sums": torch.zeros(1, dtype=torch.float64)}),
        "epoch_step beyond the epoch": lambda: state.update(epoch_step=10**6),
        # Adam's moments: its loader checks none of this, and its fused kernel would read a
        # moment of the wrong size past its end
        "moment transposed": lambda: tensors.update({"optim.0.exp_avg": tensors["optim.0.exp_avg"].t()}),
        "moment too short": lambda: tensors.update({"optim.1.exp_avg": torch.zeros(3)}),
        "moment of ints": lambda: tensors.update({"optim.1.exp_avg": tensors["optim.1.exp_avg"].int()}),
        "second moment negative": lambda: tensors.update({"optim.1.exp_avg_sq": -torch.ones_like(
            tensors["optim.1.exp_avg_sq"])}),
        "moment missing": lambda: tensors.pop("optim.1.exp_avg_sq"),
        "state for a parameter the model lacks": lambda: tensors.update({"optim.99.step": torch.tensor(1.0)}),
        "step a vector": lambda: tensors.update({"optim.1.step": torch.zeros(2)}),
        "step negative": lambda: tensors.update({"optim.1.step": torch.tensor(-3.0)}),
        "step beyond the run's": lambda: tensors.update({"optim.1.step": torch.tensor(1e30)}),
        "step a fraction": lambda: tensors.update({"optim.1.step": torch.tensor(2.5)}),
        # Adam's loader maps each saved moment to a parameter through param_groups' id lists: a
        # permuted list hands a weight the moment of a bias (the fused kernel reads past its end)
        "param ids permuted": lambda: _edit_params(state, lambda ids: [ids[1], ids[0], *ids[2:]]),
        "param ids repeated": lambda: _edit_params(state, lambda ids: [ids[0], ids[0], *ids[2:]]),
        "param ids strings": lambda: _edit_params(state, lambda ids: [str(i) for i in ids]),
        "an extra param group": lambda: state.update(param_groups=[*state["param_groups"],
                                                                   state["param_groups"][0]]),
        "step infinite": lambda: state.update(step=float("inf")),
        "step a float": lambda: state.update(step=float(state["step"])),
    }
    edits[case]()
    return tensors, state



@pytest.mark.parametrize("case", [
    "epoch not a number", "param_groups empty", "rng state wrong",
    "metrics a string",
    "metrics not records",
    "epoch far beyond metrics",
    "perm out of range",
    "perm missing",
    "sums wrong shape",
    "epoch_step beyond the epoch",
    "moment transposed", "moment too short", "moment of ints", "second moment negative", "moment missing",
    "state for a parameter the model lacks", "step a vector", "step negative", "step beyond the run's",
    "step a fraction", "param ids permuted", "param ids repeated", "param ids strings",
    "an extra param group", "step infinite", "step a float",
])
def test_checksummed_but_lying_state_is_refused_on_resume(real_run, original, tmp_path, capsys, case):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    save_checkpoint(run / "checkpoint.safetensors", *_hostile(original[1], original[2], case))
    try:
        rc = main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"])
    except Exception as e:  # would be a traceback on the command line
        pytest.fail(f"{type(e).__name__} escaped: {e}")
    assert rc == 1
    line = one_line(capsys)
    assert "checkpoint" in line and "lower --lr" not in line, line  # refused, not trained until it diverged


@pytest.mark.parametrize("flags", [{"maximize": True}, {"amsgrad": True}, {"differentiable": True},
                                   {"fused": False, "foreach": True}, {"capturable": True}])
def test_optimizer_flags_come_from_the_config_not_the_checkpoint(real_run, original, tmp_path, flags):
    """A checkpoint's Adam flags are ignored: resume trains exactly as from the honest file (a
    saved maximize=True trained the loss up; amsgrad=True was a KeyError traceback)."""
    honest, forged = tmp_path / "honest", tmp_path / "forged"
    shutil.copytree(real_run, honest)
    shutil.copytree(real_run, forged)
    state = dict(original[2])
    state["param_groups"] = [{**g, **flags} for g in state["param_groups"]]
    save_checkpoint(forged / "checkpoint.safetensors", original[1], state)
    for run in (honest, forged):
        assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert (honest / "model.safetensors").read_bytes() == (forged / "model.safetensors").read_bytes()


@pytest.mark.parametrize("name", ["optim.1.exp_avg", "model.encoder.0.0.weight"])
def test_checksummed_non_finite_values_are_refused_on_resume(real_run, original, tmp_path, capsys, name):
    """save_checkpoint never writes NaN; a file written by hand with a recomputed checksum may."""
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    tensors = dict(original[1])
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    state_json = json.dumps(original[2])
    (run / "checkpoint.safetensors").write_bytes(safetensors_save(tensors, metadata={
        "format": FORMAT, "state": state_json, "sha256": tensors_digest(tensors, state_json)}))
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 1
    line = one_line(capsys)
    assert "checkpoint does not fit" in line and f"{name} holds NaN" in line, line


# ---------------------------------------------------------------- IDX reader: mutated real files
# tests/test_data.py fuzzes small synthetic IDX files; these mutate real MNIST files.


@pytest.fixture(scope="module")
def real_idx() -> dict[str, bytes]:
    """The first 50 real test images (raw IDX) and the real gzipped label file, as stored."""
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")[:50]
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", *images.shape) + images.tobytes()
    return {"raw": raw, "gz": (SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()}


@FUZZ
@given(data=st.data())
def test_mutated_real_idx_files_give_an_array_or_a_data_error(tmp_path_factory, real_idx, data):
    kind = data.draw(st.sampled_from(["raw", "gz"]), label="kind")
    blob = bytearray(real_idx[kind])
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "cut"]), label="op")
        at = data.draw(st.one_of(st.integers(0, 24), st.integers(0, max(0, len(blob) - 1))), label="at")
        if op == "flip" and blob:
            blob[min(at, len(blob) - 1)] ^= data.draw(st.integers(1, 255), label="mask")
        elif op == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
        elif op == "delete":
            del blob[at:at + data.draw(st.integers(1, 8), label="n")]
        else:
            del blob[at:]
    path = tmp_path_factory.mktemp("idx") / "file"
    path.write_bytes(bytes(blob))
    try:
        array = read_idx(path)
    except DataError as e:
        assert str(path) in str(e)
        return
    stored = gzip.decompress(bytes(blob)) if blob[:2] == b"\x1f\x8b" else bytes(blob)
    assert array.dtype == np.uint8 and 4 + 4 * array.ndim + array.size == len(stored)
