"""Would fused C kernels for BatchNorm, ReLU, the loss and the batch speed up the seed model's CPU step?

    python benchmarks/fused_norm.py                 # 80 rounds of 40 steps per variant, torch's threads
    python benchmarks/fused_norm.py --threads 1 --rounds 40

An experiment, not a feature: `benchmarks/fused/norm_kernels.c`, compiled here with the system C
compiler (`cc`, or $CC) into a temporary folder and called through ctypes, single-threaded. It
replaces in `aelab.dense_step.DenseStep` (matmul: oneDNN by default) BatchNorm + ReLU forward
(one pass for the batch statistics, one for y), BatchNorm backward + the ReLU mask + the Linear
bias gradient (two passes instead of threshold_backward, native_batch_norm_backward and a sum),
and in the `+ loss, batch` variant also the loss with its gradient (one pass) and the batch's
gather + uint8-to-float conversion. The products, the gradient check and Adam (layer by layer,
`aelab.optim.LayerAdam`) are aelab's.

Three copies of the seed model, same initial weights, train on the same batches; each round runs
40 steps of each variant in turn, and the result is the median over rounds of each variant's time
over the ATen step's in the same round (so a drift of the shared machine's speed hits all alike).
It first checks that the fused step's loss and gradients match the ATen step's on one batch
(relative differences; the Linear biases' gradients are rounding noise around zero in both, as
BatchNorm removes a bias, and are compared in absolute terms).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from aelab.data import load_dataset
from aelab.dense_step import DenseStep
from aelab.engine import to_float_batch
from aelab.models import create_model
from aelab.optim import LayerAdam, make_optimizer
from aelab.presets import resolve_config

SOURCE = Path(__file__).parent / "fused" / "norm_kernels.c"
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]
P, L, D, INT = ctypes.c_void_p, ctypes.c_long, ctypes.c_double, ctypes.c_int


def compile_kernels() -> ctypes.CDLL:
    """norm_kernels.c built into a private temporary folder (removed again) and loaded."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise SystemExit("fused_norm.py needs a C compiler: none found as cc (or $CC)")
    with tempfile.TemporaryDirectory() as tmp:
        lib_path = Path(tmp) / "norm_kernels.so"
        subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(lib_path)], check=True, timeout=120)
        lib = ctypes.CDLL(str(lib_path))  # stays mapped after the folder is gone
    lib.bn_forward.argtypes = [P, L, L, P, P, P, P, D, D, P, P, P, INT, P]
    lib.bn_backward.argtypes = [P, P, P, L, L, P, P, P, INT, P, P, P, P, P]
    lib.gather_u8.argtypes = [P, P, L, L, P]
    lib.mse_grad.argtypes = [P, P, L, ctypes.c_float, P]
    lib.mse_grad.restype = D
    return lib


class FusedStep(DenseStep):
    """`DenseStep` with BatchNorm + ReLU (+ the bias gradient) on the C kernels."""

    def __init__(self, model: torch.nn.Module, matmul: str, lib: ctypes.CDLL, fuse_loss: bool) -> None:
        super().__init__(model, matmul)
        self.lib, self.fuse_loss = lib, fuse_loss
        self.work = torch.empty(4 * max(lin.out_features for lin, _, _ in self.layers), dtype=torch.float64)

    def normalize(self, k, b):
        _, bn, relu = self.layers[k]
        z = b["z"]
        self.lib.bn_forward(z.data_ptr(), *z.shape, bn.weight.data_ptr(), bn.bias.data_ptr(),
                            bn.running_mean.data_ptr(), bn.running_var.data_ptr(), bn.momentum, bn.eps,
                            b["y"].data_ptr(), b["mean"].data_ptr(), b["invstd"].data_ptr(), int(relu),
                            self.work.data_ptr())
        bn.num_batches_tracked.add_(1)
        return b["y"]

    def normalize_backward(self, k, b, grad):
        lin, bn, relu = self.layers[k]
        z, grad = b["z"], grad.contiguous()
        dz = b.setdefault("dz", torch.empty_like(z))
        self.lib.bn_backward(grad.data_ptr(), b["y"].data_ptr(), z.data_ptr(), *z.shape,
                             b["mean"].data_ptr(), b["invstd"].data_ptr(), bn.weight.data_ptr(), int(relu),
                             dz.data_ptr(), bn.weight.grad.data_ptr(), bn.bias.grad.data_ptr(),
                             lin.bias.grad.data_ptr(), self.work.data_ptr())
        return dz

    def weight_grads(self, lin, dz, inputs):  # the bias gradient came with normalize_backward
        lin.weight.grad = self.products.grad_weight(dz, inputs, out=lin.weight.grad)

    def mse_and_grad(self, x_hat, x, diff):
        if not self.fuse_loss:
            return super().mse_and_grad(x_hat, x, diff)
        m = diff.numel()
        total = self.lib.mse_grad(x_hat.data_ptr(), x.data_ptr(), m, 2.0 / m, diff.data_ptr())
        return torch.tensor(total / m, dtype=torch.float32), diff


def compare_gradients(lib: ctypes.CDLL, matmul: str) -> None:
    torch.manual_seed(0)
    ref_model = create_model(resolve_config("seed").model)
    fused_model = copy.deepcopy(ref_model)
    x = torch.rand(128, 784)
    ref_loss, _ = DenseStep(ref_model, matmul)(x)
    for p in fused_model.parameters():
        p.grad = torch.zeros_like(p)
    fused_loss, _ = FusedStep(fused_model, matmul, lib, fuse_loss=True)(x)
    worst_rel, worst_bias = 0.0, 0.0
    for (name, p), q in zip(ref_model.named_parameters(), fused_model.parameters()):
        diff = float((p.grad - q.grad).abs().max())
        if name.endswith("0.bias"):  # a Linear bias: zero up to rounding in both
            worst_bias = max(worst_bias, diff)
        else:
            worst_rel = max(worst_rel, diff / float(p.grad.abs().max()))
    stats = max(float((a - b).abs().max()) for a, b in zip(ref_model.buffers(), fused_model.buffers())
                if a.is_floating_point())
    print(f"one batch: loss {ref_loss.item():.7f} (ATen) vs {fused_loss.item():.7f} (fused); gradients "
          f"at most {worst_rel:.1e} apart relative to their largest value, Linear bias gradients "
          f"{worst_bias:.1e} apart; running statistics {stats:.1e}")


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--matmul", default="onednn", help="backend of aelab.matmul (default onednn)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="(default: torch's)")
    p.add_argument("--rounds", type=int, default=80)
    p.add_argument("--steps", type=int, default=40, help="steps per variant per round")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lib = compile_kernels()
    compare_gradients(lib, args.matmul)
    images = load_dataset("fashion-mnist", log=lambda line: None, progress=False).train_images
    torch.manual_seed(0)
    model = create_model(resolve_config("seed").model)
    variants = {}
    for name, fused, fuse_loss in [("ATen (aelab's step)", False, False), ("fused BatchNorm", True, False),
                                   ("fused BatchNorm + loss, batch", True, True)]:
        copy_ = copy.deepcopy(model)
        step = FusedStep(copy_, args.matmul, lib, fuse_loss) if fused else DenseStep(copy_, args.matmul)
        variants[name] = (step, LayerAdam(make_optimizer(copy_, 1e-3, torch.device("cpu"))), fuse_loss)
    n_batches = len(images) // 128
    perm = torch.randperm(len(images))
    batch = torch.empty(128, 784)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (step, update, fused_batch) in variants.items():
            started = time.perf_counter()
            for s in range(args.steps):
                b = (r * args.steps + s) % n_batches
                idx = perm[b * 128:(b + 1) * 128]
                if fused_batch:
                    lib.gather_u8(images.data_ptr(), idx.data_ptr(), len(idx), 784, batch.data_ptr())
                    x = batch
                else:
                    x = to_float_batch(images.index_select(0, idx))
                step.train_step(x, update)
            seconds[name].append((time.perf_counter() - started) / args.steps)
    base = seconds["ATen (aelab's step)"]
    print(f"{args.threads} thread(s), {args.matmul} matmul, {args.rounds} rounds of {args.steps} steps:")
    print("| step | ms per step (median) | x ATen step (median of rounds) |\n|---|---:|---:|")
    for name, times in seconds.items():
        ratio = statistics.median(t / b for t, b in zip(times, base))
        print(f"| {name} | {1e3 * statistics.median(times):.2f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
