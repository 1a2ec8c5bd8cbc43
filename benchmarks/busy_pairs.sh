#!/bin/bash
# `aelab train --threads 1` against `--threads auto`, 3 interleaved pairs of 2-epoch seed runs on
# Fashion-MNIST, beside one process running a one-thread matmul loop (train_speed.py's "busy").
# Prints each run's epoch seconds and the setting it trained on.
#     bash benchmarks/busy_pairs.sh [OUT_DIR]      # ~4 min on 2 cores
set -euo pipefail
out=${1:-$(mktemp -d)}
python -c "
import time, torch
torch.set_num_threads(1)
a = torch.randn(1024, 1024)
t = time.time()
while time.time() - t < 1800:
    a @ a
" &
busy=$!
trap 'kill $busy' EXIT
sleep 2
for r in 1 2 3; do
  for t in 1 auto; do
    aelab train --preset seed --dataset fashion-mnist --epochs 2 --threads "$t" --out "$out/$t-$r" --quiet >/dev/null 2>&1
    python -c "
import json, sys
run = sys.argv[1]
train = json.load(open(run + '/config.json'))['config']['train']
epochs = [round(json.loads(line)['seconds'], 2) for line in open(run + '/metrics.jsonl')]
print('--threads $t:', epochs, 's per epoch;', train['threads_chosen'], 'thread(s),', train['matmul_chosen'])
" "$out/$t-$r"
  done
done
