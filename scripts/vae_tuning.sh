#!/usr/bin/env bash
# The VAE preset's tuning table in the README: prior-sample FID (aelab evaluate, 5,000 samples)
# by learning rate, epochs, beta and batch size. About 20 minutes on a 2-core CPU.
#   bash scripts/vae_tuning.sh [DATA_DIR] [RUNS_DIR]
# Longer runs continue shorter ones with --resume --epochs N, which on the CPU gives the same
# weights as one straight run (tests/test_training.py).
set -euo pipefail
data=${1:-../shared/datasets/mnist-subset}
runs=${2:-runs/vae-tuning}
mkdir -p "$runs"

prior_fid() {  # train or extend RUN to EPOCHS with the given flags, then print its prior FID
  local run=$1 epochs=$2; shift 2
  if [ -f "$runs/$run/checkpoint.safetensors" ]; then
    aelab train --out "$runs/$run" --resume --epochs "$epochs" --quiet
  else
    aelab train --preset vae --data-dir "$data" --out "$runs/$run" --epochs "$epochs" --quiet "$@"
  fi
  aelab evaluate "$runs/$run" --samplers prior > /dev/null
  python3 -c "import json, sys; print(f\"{json.load(open(sys.argv[1]))['samples']['sampler prior']['fid']:.1f}\")" \
    "$runs/$run/evaluation.json"
}

echo "| vae preset with | epochs | prior FID |"
echo "|---|---:|---:|"
for e in 20 50 100 150; do echo "| --lr 1e-3 | $e | $(prior_fid lr1e-3 $e --lr 1e-3) |"; done
for e in 50 150; do echo "| (lr 3e-3, the preset) | $e | $(prior_fid lr3e-3 $e) |"; done
echo "| --seed 1 | 150 | $(prior_fid seed1 150 --seed 1) |"
echo "| --beta 0.5 | 50 | $(prior_fid beta0.5 50 --beta 0.5) |"
echo "| --beta 2 | 50 | $(prior_fid beta2 50 --beta 2) |"
echo "| --batch-size 64 | 50 | $(prior_fid batch64 50 --batch-size 64) |"
echo "| --batch-size 256 | 50 | $(prior_fid batch256 50 --batch-size 256) |"
