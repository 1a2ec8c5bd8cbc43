#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA device (CI has none):
#   bash scripts/gpu_check.sh OUT_DIR [MNIST_DIR]
# 1. tests/test_cuda.py (training, bf16, the VAE, resume, loading and sampling on the GPU) on the
#    real MNIST files in MNIST_DIR (default ../shared/datasets/mnist-subset);
# 2. benchmarks/train_speed.py --device cuda on random data of Fashion-MNIST's shape, with the
#    bf16 and compile variants: aelab vs the tutorial's loop on the GPU, for the README.
# Everything it prints is also written under OUT_DIR. Without an installed aelab it runs from src/.
set -euo pipefail
out=${1:?usage: bash scripts/gpu_check.sh OUT_DIR [MNIST_DIR]}
mkdir -p "$out"
[ -n "${2:-}" ] && export AELAB_TEST_MNIST=$2
python3 -c "import aelab" 2>/dev/null || export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$out/device.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt" ||
  echo "tests/test_cuda.py FAILED: see $out/test_cuda.txt; going on to the benchmark"
python3 benchmarks/train_speed.py --device cuda --data random --repeats 2 --variants bf16,compile \
  --json "$out/train_speed_cuda.json" 2>&1 | tee "$out/train_speed_cuda.md"
