"""The digit classifier that scores samples: a small CNN trained on the run's dataset, cached.

    classifier, accuracy = load_or_train_classifier(data)   # >= 97% on MNIST test
    probs = predict(classifier, images)                       # (n, 10)

Its penultimate features are the FID feature space in `aelab.metrics`.
"""

import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from aelab.checks import is_finite
from aelab.data.images import to_float_images
from aelab.errors import RunError
from aelab.files import (
    atomic_write_bytes,
    check_inside,
    check_regular_file,
    parse_json,
    read_inside,
    write_json,
)
from aelab.records import is_number

MAX_CACHE_BYTES = 64 * 2**20  # the classifier's weights are ~1.3 MB; its .json a few hundred bytes

__all__ = ["DigitClassifier", "image_batch", "predict", "train_classifier", "load_or_train_classifier"]


def image_batch(x, name="images"):
    """Images as float32 (n, 1, 28, 28) in [0, 1] (`aelab.data.to_float_images`, checked)."""
    return to_float_images(x, name).reshape(-1, 1, 28, 28)


class DigitClassifier(nn.Module):
    """A small CNN: conv32-pool-conv64-pool-fc128-fc10 on (n, 1, 28, 28) images in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        self.dropout = nn.Dropout(0.25)

    def features(self, x):
        """Penultimate activations of shape (n, 128) for images of shape (n, [1,] 28, 28)."""
        x = (x.reshape(-1, 1, 28, 28) - 0.1307) / 0.3081  # MNIST mean/std
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (n, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (n, 64, 7, 7)
        return F.relu(self.fc1(x.flatten(1)))  # (n, 128)

    def forward(self, x):
        """Class logits of shape (n, 10)."""
        return self.fc2(self.dropout(self.features(x)))


@torch.no_grad()
def predict(model, x, batch_size=1000):
    """Softmax probabilities (n, 10) for images x (any form ``to_float_images`` accepts)."""
    model.eval()
    x, device = image_batch(x), next(model.parameters()).device
    return torch.cat([F.softmax(model(x[i:i + batch_size].to(device)), 1).cpu()
                      for i in range(0, len(x), batch_size)])


def train_classifier(train_images, train_labels, test_images, test_labels, seed=0, epochs=3,
                     batch_size=128, progress=True):
    """Train a ``DigitClassifier`` with Adam (one-cycle schedule) on the CPU.

    On the 12k MNIST subset the default 3 epochs take about 20 s of single-core CPU time and
    reach 98.2% on the 10k test set.

    Parameters
    ----------
    train_images, test_images : uint8 tensors (n, 28, 28)
    train_labels, test_labels : int64 tensors (n,)
    seed : int
        Seeds initialisation, shuffling and dropout (the global RNG state is restored).
    progress : bool
        Show a tqdm bar of the steps on stderr.

    Returns
    -------
    (DigitClassifier, float)
        The model in eval mode and its accuracy on the test images.
    """
    x, y = image_batch(train_images, "train_images"), torch.as_tensor(train_labels).long()
    steps = epochs * -(-len(x) // batch_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitClassifier().to(memory_format=torch.channels_last)  # ~40% faster on CPU
        opt = torch.optim.Adam(model.parameters())  # lr set by the one-cycle schedule
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        bar = tqdm(total=steps, desc="training the digit classifier that scores samples (cached)",
                   unit="step", leave=False, mininterval=1.0,
                   disable=None if progress else True)  # None: on a terminal only
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(len(x)).split(batch_size):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
        bar.close()
    model = model.to(memory_format=torch.contiguous_format)  # safetensors saves contiguous only
    pred = predict(model, test_images).argmax(1)
    return model.eval(), (pred == torch.as_tensor(test_labels)).float().mean().item()


def load_or_train_classifier(data, cache_dir=None, seed=0, epochs=3):
    """Load the classifier for ``data`` from the cache, or train and cache it.

    The weights go to ``cache_dir/classifiers/<name>-<key>.safetensors`` with the test accuracy
    in a ``.json`` beside them; the key is the first 12 hex digits of a sha256 over the training
    images' bytes, ``seed`` and ``epochs``, so a different recipe never loads another's weights.
    A corrupt cache is retrained with a warning.

    Parameters
    ----------
    data : ImageData-like
        With ``name``, ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.
    cache_dir : path, optional
        Defaults to ``aelab.data.cache_root()``.

    Returns
    -------
    (DigitClassifier, float)
        The model in eval mode and its test accuracy.
    """
    if cache_dir is None:
        from aelab.data import cache_root
        cache_dir = cache_root()
    digest = hashlib.sha256(np.ascontiguousarray(data.train_images).tobytes()).hexdigest()
    key = hashlib.sha256(f"{digest} seed={seed} epochs={epochs}".encode()).hexdigest()
    weights = Path(cache_dir) / "classifiers" / f"{data.name}-{key[:12]}.safetensors"
    info = weights.with_suffix(".json")
    if (weights.exists() or weights.is_symlink()) and (info.exists() or info.is_symlink()):
        try:
            return _read_cache(weights, info, Path(cache_dir))
        except (RunError, OSError, SafetensorError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"retraining the classifier: cannot read cache {weights} ({exc})")
    start = time.perf_counter()
    model, accuracy = train_classifier(data.train_images, data.train_labels, data.test_images,
                                       data.test_labels, seed=seed, epochs=epochs)
    try:
        check_inside(weights.parent, cache_dir)  # never write through a symlinked classifiers/ folder
        atomic_write_bytes(weights, save(model.state_dict()))
        write_json(info, {"test_accuracy": accuracy, "seed": seed, "epochs": epochs,
                          "train_sha256": digest, "train_seconds": round(time.perf_counter() - start, 1)})
    except RunError as exc:  # a full, read-only or booby-trapped cache: the scores are still good
        warnings.warn(f"the classifier is not cached ({exc})")
    return model, accuracy


def _read_cache(weights: Path, info: Path, root: Path):
    """(model, accuracy) from a cache entry, read as untrusted: regular files below `root` (no
    symlink), bounded sizes, the network's own tensor names and shapes, finite weights, and an
    accuracy in [0, 1]; anything else raises (RunError, or what safetensors and torch raise)."""
    check_regular_file(weights, root, MAX_CACHE_BYTES, f"no classifier cache at {weights}")
    record = parse_json(read_inside(info, root, MAX_CACHE_BYTES), info)
    accuracy = record.get("test_accuracy") if isinstance(record, dict) else None
    if not (is_number(accuracy) and 0 <= accuracy <= 1):
        raise RunError(f"{info}: test_accuracy={str(accuracy)[:40]!r} is not a share in [0, 1]")
    state = load_file(str(weights))
    if not all(t.is_floating_point() and is_finite(t) for t in state.values()):
        raise RunError(f"{weights} holds weights that are not finite floats")
    model = DigitClassifier()
    model.load_state_dict(state)  # strict: the same names and shapes, else RuntimeError
    return model.eval(), float(accuracy)
