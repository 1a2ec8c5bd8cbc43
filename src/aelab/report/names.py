"""Human names for what the report shows: metric columns, a glossary, the samplers' order."""

from __future__ import annotations

__all__ = ["COLUMN_NAMES", "GLOSSARY", "SAMPLER_ORDER", "column_name", "sampler_rank"]

# metrics.jsonl and evaluation.json keys -> (column header, one-line explanation)
COLUMN_NAMES: dict[str, tuple[str, str]] = {
    "epoch": ("epoch", "passes over the training images"),
    "train_loss": ("training loss", "the objective on the training batches, averaged over the epoch"),
    "train_mse": ("training MSE", "mean squared error per pixel on the training batches"),
    "valid_loss": ("validation loss", "the objective on the validation images, in eval mode"),
    "valid_mse": ("validation MSE", "mean squared error per pixel on the validation images"),
    "seconds": ("seconds", "wall-clock time of the epoch, training and validation"),
    "lr": ("learning rate", "the learning rate at the end of the epoch"),
    "steps": ("steps", "optimizer steps so far"),
    "mse": ("MSE", "mean squared error per pixel, outputs clipped to [0, 1]"),
    "psnr": ("PSNR (dB)", "peak signal-to-noise ratio of that MSE: 10 log10(1 / MSE)"),
    "ssim": ("SSIM", "structural similarity, 1 is identical"),
    "fid": ("FID", "Frechet distance in the digit classifier's feature space (lower is better; "
                   "compares aelab runs only)"),
    "precision": ("precision", "share of samples inside the real images' feature-space neighbourhoods "
                               "(fidelity)"),
    "recall": ("recall", "share of real images inside the samples' neighbourhoods (coverage)"),
    "confident_share": ("confident digits", "share of samples the classifier labels with p > 0.9"),
    "classes_present": ("classes", "digit classes among at least 1% of the samples, of 10"),
    "nn_train_distance_median": ("distance to nearest training image", "median L2 distance in pixel "
                                 "space; 0 would be a copy"),
    "nn_train_distance_mean": ("distance to nearest training image (mean)", "mean L2 distance in pixel "
                               "space"),
    "n": ("images", "how many images the row scores"),
}

GLOSSARY = {
    "code": "what the encoder maps an image to: the latent vector the decoder turns back into an image",
    "sampler": "a way to draw new codes: N(0, I) noise (the tutorial's), or a density fitted to the "
               "training codes, or a VAE's prior",
    "ceiling": "decoded training codes: the best samples any sampler can get through this decoder",
    "FID": COLUMN_NAMES["fid"][1],
    "precision / recall": "fidelity and coverage apart (Kynkaanniemi et al., 2019): a sampler that "
                          "copies or collapses shows it",
    "validation split": "the images each epoch's validation numbers are computed on (see the config's "
                        "valid_fraction: 0 means the official test split, as the tutorial does)",
}

# the tutorial's noise first, then from the simplest density to the most flexible
SAMPLER_ORDER = ("normal", "prior", "gaussian", "gmm", "flow", "diffusion", "two-stage")


def column_name(key: str) -> str:
    return COLUMN_NAMES.get(key, (key.replace("_", " "), ""))[0]


def sampler_rank(name: str) -> tuple[int, str]:
    """Sort key: the teaching order, unknown names after it alphabetically."""
    return (SAMPLER_ORDER.index(name) if name in SAMPLER_ORDER else len(SAMPLER_ORDER), name)
