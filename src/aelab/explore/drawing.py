"""A drawing made on the pad, prepared the way MNIST digits were: scaled into 20x20, centred by mass.

MNIST's digits were size-normalised to fit a 20x20 box (keeping their aspect ratio, anti-aliased)
and placed in the 28x28 frame with their centre of mass at the centre. A digit drawn small or in
a corner of the pad is far from anything the model saw; `center_like_mnist` moves it back.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

INK = 0.05  # pixels above this count as ink for the bounding box


def center_like_mnist(img: np.ndarray) -> np.ndarray:
    """(28, 28) float32 in [0, 1] -> the same digit scaled to fit 20x20 and centred by mass."""
    ys, xs = np.nonzero(img > INK)
    if len(ys) == 0:
        return img.astype(np.float32, copy=True)
    crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(torch.from_numpy(crop)[None, None], size=(nh, nw), mode="bilinear",
                            antialias=True, align_corners=False)[0, 0].numpy().clip(0, 1)
    mass = float(resized.sum())
    if mass <= 0:
        return img.astype(np.float32, copy=True)
    cy = float((resized.sum(axis=1) * np.arange(nh)).sum()) / mass
    cx = float((resized.sum(axis=0) * np.arange(nw)).sum()) / mass
    y0 = min(max(round(13.5 - cy), 0), 28 - nh)
    x0 = min(max(round(13.5 - cx), 0), 28 - nw)
    out = np.zeros((28, 28), dtype=np.float32)
    out[y0:y0 + nh, x0:x0 + nw] = resized
    return out
