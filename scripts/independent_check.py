"""Score samples outside aelab's own classifier: a scikit-learn MLP on raw pixels and a Frechet
distance on 64 pixel-PCA features (no classifier at all).

    python scripts/independent_check.py RUNS_DIR     # RUNS_DIR holds seed/ and vae/ (reproduce.sh)

Runs trained before aelab stored --data-dir as an absolute path need the folder they were trained from.
"""

import sys
import time

import numpy as np
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.neural_network import MLPClassifier

from aelab.run import load_run
from aelab.samplers.fitting import run_data

N = 5000


def frechet_distance(pca: PCA, a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the PCA features of images a and b."""
    fa, fb = pca.transform(a), pca.transform(b)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    cross = linalg.sqrtm(s1 @ s2).real
    return float(((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * cross))


def main(runs: str) -> None:
    seed, vae = load_run(f"{runs}/seed"), load_run(f"{runs}/vae")
    data = run_data(seed)
    train = data.train_images.reshape(len(data.train_images), -1).numpy() / 255.0
    valid = data.test_images.reshape(len(data.test_images), -1).numpy() / 255.0
    started = time.time()
    clf = MLPClassifier(hidden_layer_sizes=(256,), max_iter=30, random_state=1)
    clf.fit(train, data.train_labels.numpy())
    print(f"MLP test accuracy {clf.score(valid, data.test_labels.numpy()):.4f} "
          f"({time.time() - started:.0f} s)")
    pca = PCA(64, random_state=0).fit(train)

    def flat(images):
        return images.reshape(N, -1).numpy()

    pick = np.random.default_rng(0).permutation(len(train))[:N]
    rows = {"real training images": train[pick],
            "seed decoded training codes": flat(seed.reconstruct(data.train_images[pick])),
            "seed normal": flat(seed.sample(N, "normal")),
            "seed gaussian": flat(seed.sample(N, "gaussian")),
            "seed gmm": flat(seed.sample(N, "gmm")),
            "vae decoded training codes": flat(vae.reconstruct(data.train_images[pick])),
            "vae prior": flat(vae.sample(N, "prior")),
            "vae gmm": flat(vae.sample(N, "gmm"))}
    print(f"| images (n={N}) | pixel-PCA-64 Frechet distance | MLP confident > 0.9 | classes >= 1% |")
    print("|---|---:|---:|---:|")
    for name, x in rows.items():
        p = clf.predict_proba(np.clip(x, 0, 1))
        confident = (p.max(1) > 0.9).mean()
        classes = (np.bincount(p.argmax(1), minlength=10) >= 0.01 * N).sum()
        print(f"| {name} | {frechet_distance(pca, valid, x):.2f} | {confident:.3f} | {classes} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
