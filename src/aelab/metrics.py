"""Honest metrics for reconstructions and samples: pure measures, no files.

* ``reconstruction_metrics``: per-pixel MSE, PSNR and SSIM (torchmetrics), data range 1.
* ``frechet_distance``: FID with an MNIST-classifier feature space, *not* Inception, so the
  numbers compare runs of this project only, never FIDs from papers.
* ``sample_scores``: is a sample a confident digit, are all classes present, is it a copy of a
  training image (nearest-neighbour distance)?
* ``pca_baseline``: what a linear model with the same code size achieves.

Improved precision and recall, and `SampleScorer` (every sample measure for many image sets
against one reference set), are in `aelab.scoring`.

Images are float tensors in [0, 1] of shape (n, 28, 28) or (n, 784); uint8 is read as 0..255.
"""

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn
from torch.nn import functional as F
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchmetrics.image.fid import FrechetInceptionDistance

from aelab.classifier import image_batch as _images
from aelab.classifier import predict
from aelab.errors import AelabError
from aelab.samplers.gaussian import GaussianSampler

__all__ = ["reconstruction_metrics", "frechet_distance", "nearest_distances", "sample_scores", "pca_baseline"]

CONFIDENT = 0.9  # max softmax above which a sample counts as a confident digit
CLASS_SHARE = 0.01  # a class is "present" if it is the argmax of at least 1% of samples


def reconstruction_metrics(images, reconstructions, batch_size=1000):
    """Per-pixel MSE, PSNR and mean SSIM of reconstructions (data range 1.0).

    Parameters
    ----------
    images, reconstructions : tensors of shape (n, 28, 28) or (n, 784), float in [0, 1]
    batch_size : int
        SSIM is computed this many images at a time to bound memory.

    Returns
    -------
    dict
        ``mse`` (mean over all pixels), ``psnr`` (dB, of that pooled MSE: 10 log10(1 / mse);
        inf when identical), ``ssim`` (mean per-image SSIM, 11x11 Gaussian window).
    """
    x, y = _images(images, "images"), _images(reconstructions, "reconstructions")
    if x.shape != y.shape:
        raise AelabError(f"images {tuple(x.shape)} and reconstructions {tuple(y.shape)} differ")
    ssim = torch.cat([
        structural_similarity_index_measure(y[i:i + batch_size], x[i:i + batch_size],
                                            data_range=1.0, reduction="none")
        for i in range(0, len(x), batch_size)])  # (n,)
    return {"mse": F.mse_loss(y, x).item(),
            "psnr": peak_signal_noise_ratio(y, x, data_range=1.0).item(),
            "ssim": ssim.mean().item()}


class _Features(nn.Module):
    """The classifier's penultimate layer as a torchmetrics FID feature extractor."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = 128  # read by FrechetInceptionDistance instead of a dummy forward

    def train(self, mode=True):
        return super().train(False)  # never leave eval mode (dropout off)

    def forward(self, x):  # (n, 1, 28, 28) float in [0, 1] -> (n, 128)
        return self.classifier.features(x)


@torch.no_grad()
def frechet_distance(real_images, fake_images, classifier, batch_size=1000):
    """FID with an MNIST-classifier feature space (128-d penultimate layer), not Inception.

    Computed by torchmetrics' ``FrechetInceptionDistance`` with a custom feature module, so
    the values only compare with other numbers from this function; FID is biased upwards for
    small sets, so compare sets of the same size.

    Parameters
    ----------
    real_images, fake_images : tensors (n, 28, 28) float in [0, 1] (n >= 2 each)
    classifier : DigitClassifier

    Returns
    -------
    float
    """
    device = next(classifier.parameters()).device
    fid = FrechetInceptionDistance(feature=_Features(classifier)).to(device)  # images as given
    for images, real in ((real_images, True), (fake_images, False)):
        x = _images(images, "real_images" if real else "fake_images")
        if len(x) < 2:
            raise AelabError(f"FID needs at least 2 images per set, got {len(x)}")
        for i in range(0, len(x), batch_size):
            fid.update(x[i:i + batch_size].to(device), real=real)
    return float(fid.compute())


@torch.no_grad()
def nearest_distances(x, train, chunk=1000, train_chunk=20000):
    """Euclidean distance (n,) from each row of x (n, d) to its nearest row of train (m, d).

    The nearest row is found with `torch.cdist` (fast, through a matrix product), then the
    distance to it is computed exactly.
    """
    x, train = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(train, dtype=torch.float32)
    out = torch.empty(len(x))
    for i in range(0, len(x), chunk):
        xi = x[i:i + chunk]
        best = torch.full((len(xi),), float("inf"))
        best_idx = torch.zeros(len(xi), dtype=torch.long)
        for j in range(0, len(train), train_chunk):
            d, k = torch.cdist(xi, train[j:j + train_chunk]).min(1)  # fast, approximate (mm)
            better = d < best
            best[better], best_idx[better] = d[better], k[better] + j
        out[i:i + chunk] = (xi - train[best_idx]).norm(dim=1)  # exact distance to that neighbour
    return out


def sample_scores(images, classifier, train_images):
    """Score generated images: digit-likeness, class coverage and memorisation.

    Parameters
    ----------
    images : tensor (n, 28, 28) float in [0, 1]
    classifier : DigitClassifier
    train_images : tensor (m, 28, 28), uint8 or float in [0, 1]

    Returns
    -------
    dict
        ``confident_share``: share of images with max softmax > 0.9;
        ``class_histogram``: list of 10 counts of the argmax class;
        ``classes_present``: classes that are the argmax of >= 1% of the images;
        ``nn_train_distance_mean`` / ``_median``: L2 distance in [0, 1] pixel space (a 784-d
        vector) from each image to its nearest training image; 0 means a copy.
    """
    probs = predict(classifier, _images(images))  # (n, 10)
    hist = torch.bincount(probs.argmax(1), minlength=10)
    dist = nearest_distances(_images(images).flatten(1), _images(train_images).flatten(1))
    return {"confident_share": (probs.max(1).values > CONFIDENT).float().mean().item(),
            "classes_present": int((hist >= CLASS_SHARE * len(probs)).sum()),
            "class_histogram": hist.tolist(),
            "nn_train_distance_mean": dist.mean().item(),
            "nn_train_distance_median": dist.median().item()}


def pca_baseline(train_images, valid_images, n_components, seed):
    """A linear baseline: PCA with ``n_components`` codes, plus Gaussian sampling in PCA space.

    Parameters
    ----------
    train_images, valid_images : tensors (n, 28, 28), uint8 or float in [0, 1]
    n_components : int
    seed : int
        Seeds the PCA solver.

    Returns
    -------
    dict
        ``metrics`` (``reconstruction_metrics`` of the validation images),
        ``reconstructions`` (n_valid, 28, 28) float in [0, 1] (clipped), ``pca`` (the fitted
        sklearn PCA), ``sampler`` (a ``GaussianSampler`` on the train PCA codes) and
        ``sample(n, seed) -> (n, 28, 28)`` images decoded from Gaussian codes, clipped to [0, 1].
    """
    train = _images(train_images, "train_images").flatten(1).numpy()
    valid = _images(valid_images, "valid_images")
    if not 1 <= n_components <= min(train.shape):
        raise AelabError(f"n_components={n_components!r} must be in [1, {min(train.shape)}]")
    pca = PCA(n_components=n_components, random_state=seed).fit(train)
    codes = pca.transform(valid.flatten(1).numpy())
    recon = torch.from_numpy(np.clip(pca.inverse_transform(codes), 0, 1)).float()
    recon = recon.reshape(-1, 28, 28)
    sampler = GaussianSampler(clip="none").fit(pca.transform(train))

    def sample(n, seed):
        images = pca.inverse_transform(sampler.sample(n, seed).astype(np.float64))
        return torch.from_numpy(np.clip(images, 0, 1)).float().reshape(-1, 28, 28)

    return {"metrics": reconstruction_metrics(valid, recon), "reconstructions": recon,
            "pca": pca, "sampler": sampler, "sample": sample}
