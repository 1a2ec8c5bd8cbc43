#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA device (CI has none):
#   bash scripts/gpu_check.sh OUT_DIR [MNIST_DIR]
# 1. tests/test_cuda.py (training, bf16, the VAE, resume, loading and sampling on the GPU; with 2+
#    GPUs also 2 processes under torchrun with SyncBatchNorm against one GPU) on the real MNIST
#    files in MNIST_DIR (default ../shared/datasets/mnist-subset);
# 2. with 2+ GPUs: a 2-GPU torchrun training run (nccl, SyncBatchNorm) into OUT_DIR/ddp-2gpu, its
#    metrics beside a 1-GPU run's; with fewer it says so and goes on;
# 3. benchmarks/train_speed.py --device cuda on random data of Fashion-MNIST's shape, with the
#    bf16 and compile variants and the whole step as one CUDA graph: aelab vs the tutorial's loop.
# Everything it prints is also written under OUT_DIR. Without an installed aelab it runs from src/.
set -euo pipefail
out=${1:?usage: bash scripts/gpu_check.sh OUT_DIR [MNIST_DIR]}
mkdir -p "$out"
mnist=${2:-${AELAB_TEST_MNIST:-../shared/datasets/mnist-subset}}
export AELAB_TEST_MNIST=$mnist
python3 -c "import aelab" 2>/dev/null || export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$out/device.txt"
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt" ||
  echo "tests/test_cuda.py FAILED: see $out/test_cuda.txt; going on"
if [ "$gpus" -ge 2 ]; then
  common=(train --data-dir "$mnist" --epochs 2 --batch-size 256 --seed 0 --device cuda --quiet)
  { python3 -m torch.distributed.run --standalone --nproc-per-node 2 -m aelab "${common[@]}" \
      --out "$out/ddp-2gpu" --force &&
    python3 -m aelab "${common[@]}" --out "$out/single-gpu" --force &&
    echo "2 GPUs (torchrun, SyncBatchNorm):" && cat "$out/ddp-2gpu/metrics.jsonl" &&
    echo "1 GPU:" && cat "$out/single-gpu/metrics.jsonl"
  } 2>&1 | tee "$out/torchrun_2gpu.txt" || echo "the 2-GPU torchrun run FAILED: see $out/torchrun_2gpu.txt"
else
  echo "$gpus GPU(s): skipping the 2-GPU torchrun run (needs 2)" | tee "$out/torchrun_2gpu.txt"
fi
python3 benchmarks/train_speed.py --device cuda --data random --repeats 2 --variants bf16,compile,cudagraph \
  --json "$out/train_speed_cuda.json" 2>&1 | tee "$out/train_speed_cuda.md"
