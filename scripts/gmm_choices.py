"""How the gmm sampler's default was chosen: sample quality per mixture setting on one run.

    python scripts/gmm_choices.py RUNS_DIR/seed               # a seed run (reproduce.sh); ~10 minutes
    python scripts/gmm_choices.py RUNS_DIR/seed --iterations  # EM iterations after the k-means start

For each setting it fits `GMMSampler` on the run's training codes (in a copy of the run folder, so
the run's own fitted sampler is left alone), decodes 5,000 samples and scores them as `aelab
evaluate` does: classifier FID against the validation images, the confident share, and the
median distance to the nearest training image. Prints a markdown table.
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

from aelab.classifier import load_or_train_classifier
from aelab.metrics import frechet_distance, sample_scores
from aelab.run import load_run
from aelab.samplers.fitting import run_data, sample_codes

N = 5000
CHOICES = [  # (label, GMMSampler arguments): 400 components and EM to convergence were the defaults then
    ("40 components on all 128 dims", {"n_components": 40, "pca_dims": None, "max_iter": 100}),
    ("100 components on 32 principal components", {"n_components": 100, "pca_dims": 32, "max_iter": 100}),
    ("200 on 32", {"n_components": 200, "pca_dims": 32, "max_iter": 100}),
    ("400 on 32", {"n_components": 400, "pca_dims": 32, "max_iter": 100}),
    ("400 on 24", {"n_components": 400, "pca_dims": 24, "max_iter": 100}),
    ("400 on 64 (the default then)", {"n_components": 400, "max_iter": 100}),
    ("400 on 64, reg_covar 0.03", {"n_components": 400, "reg_covar": 0.03, "max_iter": 100}),
    ("400 on 64, reg_covar 0.1", {"n_components": 400, "reg_covar": 0.1, "max_iter": 100}),
]
ITERATIONS = [  # (label, GMMSampler arguments): the default mixture, EM capped after the k-means start
    ("k-means start + 1 EM iteration (the default)", {"max_iter": 1}),
    ("+ 3 EM iterations", {"max_iter": 3}),
    ("+ 10 EM iterations", {"max_iter": 10}),
    ("+ up to 100 (scikit-learn's default, to tol 1e-3)", {"max_iter": 100}),
]


def main(run_dir: str, choices: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("samplers", "samples", "explain"))
        run = load_run(copy)
        data = run_data(run)
        classifier, _ = load_or_train_classifier(data)
        valid = data.test_images.float() / 255
        print(f"| gmm setting (n = {N}) | FID | confident > 0.9 | NN distance to train | fit + sample s |")
        print("|---|---:|---:|---:|---:|")
        for label, kwargs in choices:
            started = time.perf_counter()
            images = run.decode(sample_codes(run, "gmm", N, 0, data=data, **kwargs))
            seconds = time.perf_counter() - started
            scores = sample_scores(images, classifier, data.train_images)
            print(f"| {label} | {frechet_distance(valid, images, classifier):.2f} "
                  f"| {scores['confident_share']:.3f} | {scores['nn_train_distance_median']:.2f} "
                  f"| {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], ITERATIONS if "--iterations" in sys.argv[2:] else CHOICES)
