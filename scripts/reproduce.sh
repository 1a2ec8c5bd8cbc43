#!/usr/bin/env bash
# Every run, number and figure in the README, from scratch:
#   bash scripts/reproduce.sh [DATA_DIR] [RUNS_DIR]
# DATA_DIR defaults to the shared MNIST subset (12,000 train / 10,000 official test images).
# Takes about 10-20 minutes on a 2-core CPU. Figures are copied to docs/figures/.
set -euo pipefail
data=${1:-../shared/datasets/mnist-subset}
runs=${2:-runs/readme}
figs=docs/figures
mkdir -p "$runs" "$figs"

for preset in seed seed-1st-try vae; do
  [ -f "$runs/$preset/model.safetensors" ] ||
    aelab train --preset "$preset" --data-dir "$data" --out "$runs/$preset" --force --quiet
done
aelab sample "$runs/seed" --sampler normal --n 128 --seed 0 --out "$runs/seed/samples/noise-128.png"
aelab explain "$runs/seed"
aelab evaluate "$runs/seed" | tee "$runs/seed/evaluation.md"
aelab evaluate "$runs/vae" | tee "$runs/vae/evaluation.md"
aelab report "$runs/seed"
python scripts/independent_check.py "$runs" | tee "$runs/independent_check.md"

for preset in seed seed-1st-try; do
  cp "$runs/$preset/figures/epoch_001.png" "$figs/$preset-epoch_001.png"
  cp "$runs/$preset/figures/epoch_020.png" "$figs/$preset-epoch_020.png"
  cp "$runs/$preset/figures/loss.png" "$figs/$preset-loss.png"
done
cp "$runs/seed/figures/result_input.png" "$runs/seed/figures/result_output.png" "$figs/"
cp "$runs/seed/samples/noise-128.png" "$figs/seed-noise.png"
for s in gaussian gmm; do cp "$runs/seed/evaluation/$s.png" "$figs/seed-$s.png"; done
cp "$runs/vae/evaluation/prior.png" "$figs/vae-prior.png"
cp "$runs/seed/evaluation/interpolation.png" "$figs/seed-interpolation.png"
for f in code_histogram dim_stats pca noise_distances decoded; do
  cp "$runs/seed/explain/$f.png" "$figs/explain-$f.png"
done
python - "$runs" <<'PY'
import json, sys
runs = sys.argv[1]
for preset in ("seed", "seed-1st-try", "vae"):
    last = [json.loads(l) for l in open(f"{runs}/{preset}/metrics.jsonl")][-1]
    print(f"{preset}: epoch {last['epoch']} train_loss {last['train_loss']:.5f} "
          f"valid_loss {last['valid_loss']:.5f} valid_mse {last['valid_mse']:.5f}")
PY
