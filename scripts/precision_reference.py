"""Why `SampleScorer` measures precision and recall against every reference image, not an equal-sized subset.

    python scripts/precision_reference.py DATA_DIR     # the MNIST folder; about a minute

Scores 5,000 uniform-noise images and 5,000 real training digits with improved precision and
recall (k = 3, the digit classifier's features) against four random halves of the 10,000 test
digits and against all of them; prints a markdown table.
"""

import sys

import torch

from aelab.classifier import load_or_train_classifier
from aelab.data import load_dataset
from aelab.scoring import classifier_features, precision_recall


def main(data_dir: str) -> None:
    data = load_dataset("mnist", data_dir, log=lambda line: None, progress=False)
    classifier, _ = load_or_train_classifier(data)
    test = classifier_features(classifier, data.test_images)
    sets = {"uniform noise": classifier_features(
                classifier, torch.rand(5000, 28, 28, generator=torch.Generator().manual_seed(0))),
            "real training digits": classifier_features(classifier, data.train_images[:5000])}
    refs = [(f"5,000 random test digits (draw {seed})",
             test[torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:5000]])
            for seed in range(4)] + [("all 10,000 test digits", test)]
    print("| reference | " + " | ".join(f"{name}: precision / recall" for name in sets) + " |")
    print("|---|" + "---:|" * len(sets))
    for label, ref in refs:
        cells = [precision_recall(ref, feats) for feats in sets.values()]
        print(f"| {label} | " + " | ".join(f"{c['precision']:.3f} / {c['recall']:.3f}" for c in cells) + " |",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
