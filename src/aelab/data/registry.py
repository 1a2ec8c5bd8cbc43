"""The dataset registry: every MNIST-like set aelab knows, with its mirrors and checksums.

No torch here, so the CLI can list `--dataset` choices before torch loads.

    >>> DATASETS.names()
    ['mnist', 'fashion-mnist', 'kmnist']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..registry import Registry

__all__ = ["FILES", "Checksum", "DatasetSpec", "DATASETS", "is_official"]

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class Checksum:
    """Published checksum(s) of one official .gz file; every one given is verified."""

    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: base URLs tried in order and the checksum of each standard file."""

    mirrors: tuple[str, ...]
    checksums: Mapping[str, Checksum]


def _sums(*pairs: tuple[str, str]) -> Mapping[str, Checksum]:
    """Map the four standard names, in FILES order, to (sha256, md5) pairs."""
    return MappingProxyType({f: Checksum(s, m) for f, (s, m) in zip(FILES, pairs, strict=True)})


# SHA-256: tensorflow/datasets, tensorflow_datasets/url_checksums/{mnist,fashion_mnist,kmnist}.txt
# (the MNIST t10k values also equal shared/datasets/README.md and the bundled files).
# MD5: MNIST as published with the data set and Fashion-MNIST as published by Zalando (both
# quoted in the shared datasets README); KMNIST from torchvision's KMNIST.resources.
DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _name, _spec in {
    "mnist": DatasetSpec(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        _sums(("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
               "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
               "d53e105ee54ea40749a09fcbcd1e9432"),
              ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
               "9fb629c4189551a2d022fa330f9573f3"),
              ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
               "ec29112dd5afa0611ce80d1b7f02629c"))),
    "fashion-mnist": DatasetSpec(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        _sums(("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
               "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
              ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
               "25c81989df183df01b3e8a0aad5dffbe"),
              ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
               "bef4ecab320f06d8554ea6380940ec79"),
              ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
               "bb300cfdad3c16e7a12a480ee83cd310"))),
    "kmnist": DatasetSpec(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        _sums(("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
               "bdb82020997e1d708af4cf47b453dcf7"),
              ("e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
               "e144d726b3acfaa3e44228e80efcd344"),
              ("edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
               "5c965bf0a639b31b8f53240b1b52f4d7"),
              ("20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
               "7320c461ea6c1c855c0b718fb2a4b134"))),
}.items():
    DATASETS.add(_name, _spec)


def is_official(name: str, files: Mapping[str, str]) -> bool:
    """True when all four files are the official .gz files (by the registry's SHA-256)."""
    sums = DATASETS.get(name).checksums if name in DATASETS else {}
    return bool(sums) and all(sums[f].sha256 is not None and files.get(f) == sums[f].sha256
                              for f in FILES)
