#!/usr/bin/env bash
# Every number and figure of the README's "Which autoencoder, and why", from scratch:
#   bash scripts/compare.sh [DATA_DIR] [RUNS_DIR]
# DATA_DIR defaults to the shared MNIST subset (12,000 train / 10,000 official test images).
# Finished runs are reused, so an interrupted script continues where it stopped. Figures are
# copied to docs/figures/compare-*.png.
set -euo pipefail
data=${1:-../shared/datasets/mnist-subset}
runs=${2:-runs/readme}
figs=docs/figures
mkdir -p "$runs" "$figs"

# the grid: 5 models x 6 code sizes, 20 epochs each, PCA beside them; FID of 2,000 samples
aelab compare --models dense,dense-linear,conv,dense-vae,conv-vae --latent-dims 2,8,16,32,64,128 \
  --epochs 20 --data-dir "$data" --out "$runs/compare" --quiet | tee "$runs/compare-stdout.md"

# the conv model at latent 30 (the size between the grid's 16 and 32), same recipe
[ -f "$runs/conv-30/model.safetensors" ] ||
  aelab train --preset compare --model conv --latent-dim 30 --data-dir "$data" --out "$runs/conv-30" --force --quiet
python -c "import json, sys; print('conv-30 test MSE', json.load(open(sys.argv[1]))['test']['mse'])" \
  "$runs/conv-30/final.json"

# the regularised autoencoder against the tutorial's, both sampled with gmm (5,000 samples)
[ -f "$runs/seed/model.safetensors" ] ||
  aelab train --preset seed --data-dir "$data" --out "$runs/seed" --force --quiet
[ -f "$runs/rae/model.safetensors" ] ||
  aelab train --preset rae --data-dir "$data" --out "$runs/rae" --force --quiet
aelab evaluate "$runs/seed" --samplers gmm | tee "$runs/seed/evaluation-gmm.md"
aelab evaluate "$runs/rae" --samplers gmm | tee "$runs/rae/evaluation-gmm.md"

# 2-d codes seen directly: the tutorial's ReLU'd code against a linear one
for run in dense-2 conv-2; do
  aelab explain "$runs/compare/$run" > /dev/null
  cp "$runs/compare/$run/explain/codes_2d.png" "$figs/compare-$run-codes.png"
  cp "$runs/compare/$run/explain/manifold.png" "$figs/compare-$run-manifold.png"
done
for f in mse fid cost; do cp "$runs/compare/compare-$f.png" "$figs/compare-$f.png"; done
cp "$runs/rae/evaluation/gmm.png" "$figs/compare-rae-gmm.png"
