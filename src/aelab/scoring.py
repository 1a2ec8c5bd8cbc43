"""Scoring many sets of generated images against one reference set: fidelity and coverage apart.

    scorer = SampleScorer(classifier, valid_images, train_images)   # reference features once
    row = scorer.score(images)   # fid, precision, recall, confident_share, classes, NN distances

* ``precision_recall``: improved precision (fidelity: are samples realistic?) and recall
  (coverage: is all of the data reached?) of Kynkaanniemi et al. (NeurIPS 2019), with k-NN
  balls (k = 3) in the digit classifier's 128-d feature space, the FID's space. A sampler that
  copies or collapses onto a few digits can still have a fair FID; its recall shows it.
* ``SampleScorer``: the measures of `aelab.metrics` (FID, confident share, classes, nearest
  training image) and precision / recall for many sets, the reference computed once.

Images are float tensors in [0, 1] of shape (n, 28, 28) or (n, 784); uint8 is read as 0..255.
"""

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.image.fid import FrechetInceptionDistance

from aelab.classifier import image_batch as _images
from aelab.errors import AelabError
from aelab.metrics import CLASS_SHARE, CONFIDENT, nearest_distances

__all__ = ["classifier_features", "kth_neighbour_radii", "precision_recall", "SampleScorer"]


@torch.no_grad()
def classifier_features(classifier, images, batch_size=1000):
    """The classifier's 128-d penultimate features (n, 128) float32 of images, on the CPU."""
    x, device = _images(images), next(classifier.parameters()).device
    classifier.eval()
    return torch.cat([classifier.features(x[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(x), batch_size)])


@torch.no_grad()
def kth_neighbour_radii(features, k=3, chunk=1000):
    """Distance (n,) from each row of features (n, f) to its k-th nearest other row."""
    features = torch.as_tensor(features, dtype=torch.float32)
    return torch.cat([torch.cdist(features[i:i + chunk], features).topk(k + 1, dim=1, largest=False)
                      .values[:, k] for i in range(0, len(features), chunk)])  # [:, 0] is the row itself


@torch.no_grad()
def _inside_any_ball(points, centres, radii, chunk):
    """Share of `points` within radii[j] of some centres[j]."""
    inside = [(torch.cdist(points[i:i + chunk], centres) <= radii[None]).any(1)
              for i in range(0, len(points), chunk)]
    return torch.cat(inside).float().mean().item()


@torch.no_grad()
def precision_recall(real_features, fake_features, k=3, chunk=1000, real_radii=None):
    """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019) of fake against real.

    Each set's manifold is the union of balls around its points, each ball reaching the point's
    k-th nearest neighbour in the same set. Precision: the share of fake points inside the real
    manifold (are samples realistic?); recall: the share of real points inside the fake manifold
    (is all of the data covered?). The paper uses k = 3 and sets of equal size; `SampleScorer`
    uses every reference image instead (see there).

    Parameters
    ----------
    real_features, fake_features : tensors (n, f) and (m, f), e.g. `classifier_features`
    real_radii : tensor (n,), optional
        ``kth_neighbour_radii(real_features, k)``, when the caller scores many sets against one.

    Returns
    -------
    dict
        ``precision`` and ``recall``, each in [0, 1].
    """
    real = torch.as_tensor(real_features, dtype=torch.float32)
    fake = torch.as_tensor(fake_features, dtype=torch.float32)
    if min(len(real), len(fake)) <= k:
        raise AelabError(f"precision and recall with k={k} need more than {k} points per set, "
                         f"got {len(real)} real and {len(fake)} fake")
    if real_radii is None:
        real_radii = kth_neighbour_radii(real, k, chunk)
    fake_radii = kth_neighbour_radii(fake, k, chunk)
    return {"precision": _inside_any_ball(fake, real, real_radii, chunk),
            "recall": _inside_any_ball(real, fake, fake_radii, chunk)}


class _Identity(nn.Module):
    """Features in, features out: lets torchmetrics' FID take precomputed classifier features."""

    num_features = 128

    def forward(self, x):
        return x


class SampleScorer:
    """Every sample measure of `evaluate` for many image sets against one reference set.

        scorer = SampleScorer(classifier, valid_images, train_images)   # reference features once
        row = scorer.score(images)   # fid, precision, recall, confident_share, classes, NN distances

    The FID is torchmetrics' on the classifier's features against all reference images (as
    ``frechet_distance``), and so are precision and recall. Kynkaanniemi et al. compare sets of
    equal size, but a k-NN ball of an odd real digit is wide, and generated images that all
    look alike fall into a few such balls together: measured on MNIST, uniform-noise images
    scored precision 0.14-0.66 against 5,000 randomly chosen test digits (four draws) and
    0.05 against all 10,000, while real training digits scored 0.88 / 0.88 against all 10,000
    whether 2,000 or 5,000 of them were scored.
    """

    def __init__(self, classifier, reference_images, train_images, k=3):
        self.classifier, self.k = classifier, k
        self.train = _images(train_images).flatten(1)
        self.reference = classifier_features(classifier, reference_images)   # (n_ref, 128)
        self.radii = kth_neighbour_radii(self.reference, k)                  # (n_ref,)
        self.fid = FrechetInceptionDistance(feature=_Identity(), reset_real_features=False)
        self.fid.update(self.reference.double(), real=True)

    def score(self, images):
        """The measures of one set of images (n, 28, 28) float in [0, 1], n >= 2."""
        images = _images(images)
        if len(images) < 2:
            raise AelabError(f"FID needs at least 2 images per set, got {len(images)}")
        feats = classifier_features(self.classifier, images)   # (n, 128)
        self.fid.reset()                                         # keeps the reference features
        self.fid.update(feats.double(), real=False)
        fid = float(self.fid.compute())
        pr = precision_recall(self.reference, feats, k=self.k, real_radii=self.radii)
        probs = F.softmax(self.classifier.fc2(feats.to(next(self.classifier.parameters()).device)), 1).cpu()
        hist = torch.bincount(probs.argmax(1), minlength=10)
        dist = nearest_distances(images.flatten(1), self.train)
        return {"fid": fid, **pr,
                "confident_share": (probs.max(1).values > CONFIDENT).float().mean().item(),
                "classes_present": int((hist >= CLASS_SHARE * len(probs)).sum()),
                "class_histogram": hist.tolist(),
                "nn_train_distance_mean": dist.mean().item(),
                "nn_train_distance_median": dist.median().item()}
