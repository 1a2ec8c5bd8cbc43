"""Score samples outside aelab's own classifier: a scikit-learn MLP on raw pixels and a Frechet
distance on 64 pixel-PCA features (no classifier at all).

    python scripts/independent_check.py RUNS_DIR     # RUNS_DIR holds seed/ and vae/ (reproduce.sh)

Runs trained before aelab stored --data-dir as an absolute path need the folder they were trained from.
"""
import sys, time, numpy as np, torch
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.neural_network import MLPClassifier
from aelab.run import load_run
from aelab.sampling import run_data
runs = sys.argv[1]
seed = load_run(f"{runs}/seed"); vae = load_run(f"{runs}/vae")
data = run_data(seed)
Xtr = data.train_images.reshape(len(data.train_images), -1).numpy() / 255.0
Xva = data.test_images.reshape(len(data.test_images), -1).numpy() / 255.0
t = time.time()
clf = MLPClassifier(hidden_layer_sizes=(256,), max_iter=30, random_state=1).fit(Xtr, data.train_labels.numpy())
print(f"MLP test accuracy {clf.score(Xva, data.test_labels.numpy()):.4f} ({time.time()-t:.0f} s)")
pca = PCA(64, random_state=0).fit(Xtr)
def fd(a, b):
    fa, fb = pca.transform(a), pca.transform(b)
    m1, m2 = fa.mean(0), fb.mean(0); s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    cs = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * cs))
n = 5000
pick = np.random.default_rng(0).permutation(len(Xtr))[:n]
rows = {"real training images": Xtr[pick],
        "seed decoded training codes": seed.reconstruct(data.train_images[pick]).reshape(n, -1).numpy(),
        "seed normal": seed.sample(n, "normal").reshape(n, -1).numpy(),
        "seed gaussian": seed.sample(n, "gaussian").reshape(n, -1).numpy(),
        "seed gmm": seed.sample(n, "gmm").reshape(n, -1).numpy(),
        "vae decoded training codes": vae.reconstruct(data.train_images[pick]).reshape(n, -1).numpy(),
        "vae prior": vae.sample(n, "prior").reshape(n, -1).numpy(),
        "vae gmm": vae.sample(n, "gmm").reshape(n, -1).numpy()}
print("| images (n=5000) | pixel-PCA-64 Frechet distance | MLP confident > 0.9 | classes >= 1% |")
print("|---|---:|---:|---:|")
for name, x in rows.items():
    p = clf.predict_proba(np.clip(x, 0, 1))
    conf = (p.max(1) > 0.9).mean(); classes = (np.bincount(p.argmax(1), minlength=10) >= 0.01 * n).sum()
    print(f"| {name} | {fd(Xva, x):.2f} | {conf:.3f} | {classes} |", flush=True)
