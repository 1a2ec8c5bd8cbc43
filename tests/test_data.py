"""IDX reading and validation, the registry, data folders and the offline fallback.

Real data: the shared MNIST subset beside the repo (../shared/datasets/mnist-subset) and the
copy bundled in the package. Broken files are built from scratch in tmp_path.
"""

import gzip
import hashlib
import json
import shutil
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aelab.data import (
    FILES,
    ImageData,
    bundled_dir,
    cache_root,
    list_datasets,
    load_dataset,
    load_split_files,
    read_idx,
)
from aelab.data import load as data_load
from aelab.data.registry import DATASETS, Checksum, DatasetSpec
from aelab.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist-subset"
# From shared/datasets/README.md: labels in the 12,000 training images.
TRAIN_LABEL_COUNTS = [1206, 1351, 1176, 1228, 1184, 1048, 1208, 1279, 1127, 1193]
SUBSET_SHA256 = {  # shared/datasets/README.md
    "train-images-idx3-ubyte.gz":
        "a856023f852601af3bf5c4d4c023437baef712e5f2889b2da8489336d2468a6f",
    "train-labels-idx1-ubyte.gz":
        "326219f3c671380c37d64b3808a2e7b3bee1ff45ce6fa2e783b22c6b1e0fece9",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    """Every test here runs offline with an empty cache of its own."""
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AELAB_OFFLINE", "1")
    monkeypatch.delenv("AELAB_MIRRORS", raising=False)


def idx_bytes(dims, payload=None, type_code=0x08, ndim=None):
    """An IDX file: magic 00 00 type ndim, big-endian dims, then payload (zeros by default)."""
    ndim = len(dims) if ndim is None else ndim
    header = bytes([0, 0, type_code, ndim]) + struct.pack(f">{len(dims)}I", *dims)
    if payload is None:
        payload = bytes(int(np.prod(dims)))
    return header + payload


def write(path, content, gz=False):
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def write_split_folder(folder, train_images, train_labels, test_images, test_labels):
    """Write four raw IDX files with the standard names from uint8 arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(FILES, (train_images, train_labels, test_images, test_labels)):
        write(folder / name.removesuffix(".gz"), idx_bytes(arr.shape, arr.tobytes()))
    return folder


def small_arrays(n=5):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


# ---------------------------------------------------------------- real files


@pytest.mark.parametrize("folder", [SHARED, bundled_dir()], ids=["shared", "bundled"])
def test_real_subset_loads(folder):
    d = load_split_files(folder, "mnist", "test")
    assert d.train_images.shape == (12000, 28, 28)
    assert d.test_images.shape == (10000, 28, 28)
    assert d.train_images.dtype == torch.uint8 and d.test_images.dtype == torch.uint8
    assert d.train_labels.dtype == torch.int64 and d.train_labels.shape == (12000,)
    assert int(d.train_images.max()) == 255 and int(d.test_images.max()) == 255
    assert torch.bincount(d.train_labels, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert d.train_images.is_contiguous()
    assert d.files == SUBSET_SHA256


def test_bundled_copy_is_byte_identical_to_shared():
    for name in FILES:
        assert (bundled_dir() / name).read_bytes() == (SHARED / name).read_bytes(), name


def test_bundled_readme_carries_credit_and_checksums():
    text = (bundled_dir() / "README.md").read_text()
    assert "Yann LeCun" in text and "Attribution-ShareAlike 3.0" in text
    for sha in SUBSET_SHA256.values():
        assert sha in text


def test_registry_matches_official_t10k_files():
    """The t10k files of the subset are the official ones: both registry checksums hold."""
    for name in FILES[2:]:
        entry = DATASETS.get("mnist").checksums[name]
        raw = (SHARED / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry.sha256
        assert hashlib.md5(raw).hexdigest() == entry.md5


def test_registry_is_complete():
    assert list_datasets() == ["mnist", "fashion-mnist", "kmnist"]
    for name in list_datasets():
        spec = DATASETS.get(name)
        assert spec.mirrors and all(m.startswith("http") for m in spec.mirrors)
        assert set(spec.checksums) == set(FILES)
        for c in spec.checksums.values():
            assert len(c.sha256) == 64 and len(c.md5) == 32


def test_raw_and_gz_read_the_same(tmp_path):
    raw = write(tmp_path / "labels", gzip.decompress((SHARED / FILES[3]).read_bytes()))
    a = read_idx(SHARED / FILES[3], expected_ndim=1)
    b = read_idx(raw, expected_ndim=1)
    assert a.dtype == np.uint8 and a.shape == (10000,)
    np.testing.assert_array_equal(a, b)


def test_gzip_is_detected_by_magic_not_name(tmp_path):
    content = idx_bytes((3,), b"\x01\x02\x03")
    gz_named_raw = write(tmp_path / "raw-but-named.gz", content)
    raw_named_gz = write(tmp_path / "gz-but-named-raw", content, gz=True)
    assert read_idx(gz_named_raw).tolist() == [1, 2, 3]
    assert read_idx(raw_named_gz).tolist() == [1, 2, 3]


# ---------------------------------------------------------------- broken files


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("content, expected_ndim, words", [
    (b"\x12\x34\x08\x01" + struct.pack(">I", 2) + b"\0\0", None, "magic"),
    (b"\0\0", None, "magic"),
    (idx_bytes((2,), type_code=0x0D), None, "type code 0x0d"),
    (idx_bytes((2, 2)), 1, "2 dimensions, expected 1"),
    (idx_bytes((4, 28, 28))[:-10], 3, "too short"),
    (idx_bytes((4, 28, 28)) + b"\0", 3, "trailing bytes"),
    (idx_bytes((4, 28, 28))[:10], 3, "header"),
    (idx_bytes((5,))[:-1] + b"", None, "too short"),
], ids=["magic", "empty-ish", "type", "ndim", "short", "trailing", "cut-header", "short-1d"])
def test_broken_idx_is_refused(tmp_path, gz, content, expected_ndim, words):
    path = write(tmp_path / "broken-file", content, gz=gz)
    with pytest.raises(DataError) as err:
        read_idx(path, expected_ndim=expected_ndim)
    assert "broken-file" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_lying_header_is_refused_without_allocating(tmp_path, gz):
    """A header claiming 2**31 images of 28x28 in a tiny file must not allocate 1.7 TB."""
    path = write(tmp_path / "liar", idx_bytes((2**31, 28, 28), payload=bytes(784)), gz=gz)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(DataError, match="liar.*refusing"):
        read_idx(path, expected_ndim=3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 10 * 2**20


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_header_larger_than_data_reads_only_what_is_there(tmp_path, gz):
    """Under the hard cap but far beyond the file: memory follows the data, not the header."""
    path = write(tmp_path / "liar", idx_bytes((1_000_000, 28, 28), payload=bytes(784)), gz=gz)
    tracemalloc.start()
    with pytest.raises(DataError, match="liar.*too short"):
        read_idx(path, expected_ndim=3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 2**20  # the header asks for 784 MB


def test_truncated_gzip_is_a_data_error(tmp_path):
    whole = gzip.compress(idx_bytes((3000,)))
    path = write(tmp_path / "cut.gz", whole[: len(whole) // 2])
    with pytest.raises(DataError, match="cut.gz.*corrupt or truncated"):
        read_idx(path)


def test_gzip_crc_error_is_a_data_error(tmp_path):
    whole = bytearray(gzip.compress(idx_bytes((3000,))))
    whole[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = write(tmp_path / "crc.gz", bytes(whole))
    with pytest.raises(DataError, match="crc.gz.*corrupt"):
        read_idx(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nothing-here.*not found"):
        read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize("change, words", [
    ("labels-count", "4 labels for the 5 images"),
    ("label-10", "labels must be 0..9, found 10"),
    ("32x32", "32x32, expected 28x28"),
    ("labels-2d", "2 dimensions, expected 1"),
])
def test_broken_split_folder_is_refused(tmp_path, change, words):
    images, labels = small_arrays()
    test_images, test_labels = images.copy(), labels.copy()
    if change == "labels-count":
        test_labels = test_labels[:4]
    elif change == "label-10":
        test_labels[2] = 10
    elif change == "32x32":
        test_images = np.zeros((5, 32, 32), np.uint8)
    elif change == "labels-2d":
        test_labels = test_labels.reshape(5, 1)
    folder = write_split_folder(tmp_path / "d", images, labels, test_images, test_labels)
    with pytest.raises(DataError) as err:
        load_split_files(folder)
    assert "t10k-" in str(err.value) and words in str(err.value)


def test_good_small_folder_loads(tmp_path):
    images, labels = small_arrays()
    d = load_split_files(write_split_folder(tmp_path / "d", images, labels, images, labels))
    np.testing.assert_array_equal(d.train_images.numpy(), images)
    assert d.test_labels.tolist() == labels.tolist()


# ---------------------------------------------------------------- ImageData


@pytest.fixture(scope="module")
def bundled() -> ImageData:
    return load_split_files(bundled_dir(), "mnist", "bundled subset")


def test_torch_dataset_items(bundled):
    ds = bundled.torch_dataset("test")
    assert len(ds) == 10000
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) == 1.0
    assert isinstance(label, int) and label == int(bundled.test_labels[0])
    expected = bundled.test_images[0].float() / 255
    assert torch.equal(image[0], expected)


def test_split_and_info(bundled):
    images, labels = bundled.split("train")
    assert images is bundled.train_images and labels is bundled.train_labels
    with pytest.raises(DataError, match="'valid'"):
        bundled.split("valid")
    info = json.loads(json.dumps(bundled.info()))
    assert info["n_train"] == 12000 and info["n_test"] == 10000
    assert info["official"] is False  # the train files are a subset
    assert info["files"] == SUBSET_SHA256 and info["source"] == "bundled subset"


def test_info_official_when_all_checksums_match(bundled, monkeypatch):
    spec = DatasetSpec((), {f: Checksum(s) for f, s in SUBSET_SHA256.items()})
    monkeypatch.setitem(DATASETS._entries, "mnist", (spec, ""))
    assert bundled.info()["official"] is True


# ---------------------------------------------------------------- load_dataset


def test_data_dir_with_raw_copies_logs_notice(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in FILES:
        raw = gzip.decompress((SHARED / name).read_bytes())
        (folder / name.removesuffix(".gz")).write_bytes(raw)
    lines = []
    d = load_dataset("mnist", data_dir=folder, log=lines.append)
    assert d.source == f"data-dir {folder}"
    assert d.train_images.shape == (12000, 28, 28) and d.test_images.shape == (10000, 28, 28)
    assert len(lines) == 1 and "do not match the official mnist checksums" in lines[0]
    assert set(d.files) == {n.removesuffix(".gz") for n in FILES}


def test_data_dir_dotted_spelling(tmp_path):
    folder = tmp_path / "dotted"
    folder.mkdir()
    for name in FILES:
        shutil.copy(SHARED / name, folder / name.replace("-idx", ".idx"))
    d = load_dataset("mnist", data_dir=folder, log=lambda _: None)
    assert d.train_images.shape[0] == 12000


def test_missing_data_dir_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="no-such-folder"):
        load_dataset("mnist", data_dir=tmp_path / "no-such-folder")
    folder = tmp_path / "three"
    folder.mkdir()
    for name in FILES[:3]:
        shutil.copy(SHARED / name, folder / name)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=folder)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match="unknown dataset 'cifar'.*mnist, fashion-mnist, kmnist"):
        load_dataset("cifar")


def test_offline_mnist_falls_back_to_bundled_with_one_line():
    lines = []
    d = load_dataset("mnist", log=lines.append)
    assert d.source == "bundled subset" and d.train_images.shape == (12000, 28, 28)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "--data-dir" in lines[0] and "bundled subset" in lines[0]


def test_offline_without_fallback_raises():
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist", fallback_to_bundled=False)


def test_offline_kmnist_and_fashion_raise(monkeypatch, tmp_path):
    monkeypatch.setattr(data_load, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    for name in ("kmnist", "fashion-mnist"):
        with pytest.raises(DataError, match="--data-dir") as err:
            load_dataset(name, log=pytest.fail)
        assert "\n" not in str(err.value)


def test_download_false_falls_back(monkeypatch):
    monkeypatch.delenv("AELAB_OFFLINE")
    lines = []
    d = load_dataset("mnist", download=False, mirrors=["http://127.0.0.1:9/"], log=lines.append)
    assert d.source == "bundled subset" and len(lines) == 1


def test_debian_fashion_folder_is_used(monkeypatch, tmp_path):
    images, labels = small_arrays()
    debian = write_split_folder(tmp_path / "debian", images, labels, images, labels)
    monkeypatch.setattr(data_load, "DEBIAN_FASHION_DIR", debian)
    d = load_dataset("fashion-mnist", log=pytest.fail)
    assert d.source == f"debian {debian}" and d.name == "fashion-mnist"


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("AELAB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "aelab"


@given(content=st.binary(max_size=64), gz=st.booleans(), cut=st.integers(0, 40))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_give_an_array_or_a_data_error(tmp_path_factory, content, gz, cut):
    """Fuzz: whatever the bytes (random, or a valid header cut short), only DataError escapes."""
    content = content if len(content) % 2 else idx_bytes((3, 2))[:cut] + content
    stored = gzip.compress(content) if gz else content
    stored = stored[: len(stored) - cut % 7]
    path = write(tmp_path_factory.mktemp("fuzz") / "f", stored)
    try:
        array = read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc)
    else:  # a cut gzip stream can never be read as whole
        idx = content if gz else stored
        assert array.dtype == np.uint8 and array.size == len(idx) - 4 - 4 * array.ndim
