"""Shared fixtures: the real MNIST files from ../shared and small slices of them for quick runs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see aelab/__init__.py

import pytest

# $AELAB_TEST_MNIST points elsewhere, e.g. on a GPU machine that has the files but not ../shared
SHARED_MNIST = Path(os.environ.get("AELAB_TEST_MNIST")
                    or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist-subset")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    assert SHARED_MNIST.is_dir(), f"the shared MNIST files are missing at {SHARED_MNIST}"
    return SHARED_MNIST


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from aelab.data import load_dataset

    return load_dataset("mnist", data_dir=mnist_dir, log=lambda line: None, progress=False)


@pytest.fixture(scope="session")
def small_mnist(mnist):
    """3,000 real training and 1,000 real test images: a run of a few epochs takes seconds."""
    return dataclasses.replace(
        mnist, train_images=mnist.train_images[:3000], train_labels=mnist.train_labels[:3000],
        test_images=mnist.test_images[:1000], test_labels=mnist.test_labels[:1000])


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """Tests never touch the network or the user's cache."""
    monkeypatch.setenv("AELAB_OFFLINE", "1")
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path_factory.getbasetemp() / "aelab-cache"))
    # `--threads auto` (the default) measures and may choose differently from run to run on a
    # shared machine; tests that compare two runs need one count: at most $OMP_NUM_THREADS, here 1.
    # tests/test_threads.py lifts it where it tests auto itself.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # likewise `--matmul auto` may choose either backend of aelab.matmul: here torch's, which every
    # build has (tests/test_threads.py and tests/test_matmul.py lift it)
    monkeypatch.setenv("AELAB_MATMUL", "torch")
