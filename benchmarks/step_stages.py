"""Where one hand-written training step of the seed model goes, stage by stage, in the real loop.

    python benchmarks/step_stages.py                  # 2 epochs on 60,000 Fashion-MNIST images
    python benchmarks/step_stages.py --matmul torch --threads 1
    python benchmarks/step_stages.py --adam after      # the check and Adam after the backward pass

The engine's loop on CPU (batch gather, `DenseStep.train_step` with the chosen matmul backend,
each layer's gradient check and fused Adam update inside its backward pass, the loss sums), with a
clock read around each stage of each step: the products of the forward pass, of the weight and of
the input gradients, BatchNorm + ReLU forward and backward, the loss, the bias gradients, the
check, Adam. Prints microseconds per step for the last epoch, and beside them each stage run alone
with hot caches (`stages_alone`: their sum bounds any schedule of the same kernels). The clock
reads add about 1% to the step. Unlike a profiler it sees the stages where the loop runs them:
after Adam has streamed its 31 MB of weights, moments and gradients, the next forward's weights
come from memory.
"""

from __future__ import annotations

import argparse
import collections
import math
import time

import torch

from aelab.checks import all_finite
from aelab.data import load_dataset
from aelab.dense_step import DenseStep
from aelab.engine import _stop_if_not_finite, to_float_batch
from aelab.models import create_model
from aelab.optim import LayerAdam, make_optimizer
from aelab.presets import resolve_config


class TimedStep(DenseStep):
    """`DenseStep._run` with a clock around each stage (same arithmetic, same order)."""

    def __init__(self, model: torch.nn.Module, matmul: str) -> None:
        super().__init__(model, matmul)
        self.seconds: collections.Counter[str] = collections.Counter()

    def _timed(self, stage: str, fn, *args, **kwargs):
        started = time.perf_counter()
        value = fn(*args, **kwargs)
        self.seconds[stage] += time.perf_counter() - started
        return value

    def _run(self, x: torch.Tensor, update) -> tuple[torch.Tensor, str | None]:
        x, bufs, diff = self.prepare(x)
        inputs, a = [], x
        for k, ((lin, _, _), b) in enumerate(zip(self.layers, bufs)):
            inputs.append(a)
            b["z"] = self._timed("products: forward", self.products.linear, a, lin.weight, lin.bias,
                                 out=b["z"])
            a = self._timed("BatchNorm + ReLU forward", self.normalize, k, b)
        mse, grad = self._timed("loss and its gradient", self.mse_and_grad, a, x, diff)
        if update is not None and not math.isfinite(self._timed("gradient check", mse.item)):
            return mse, "loss"
        for k in range(len(self.layers) - 1, -1, -1):
            lin, b = self.layers[k][0], bufs[k]
            dz = self._timed("BatchNorm + ReLU backward", self.normalize_backward, k, b, grad)
            self._timed("bias gradients", torch.sum, dz, dim=0, out=lin.bias.grad)
            lin.weight.grad = self._timed("products: weight gradients", self.products.grad_weight, dz,
                                          inputs[k], out=lin.weight.grad)
            if k > 0:
                grad = self._timed("products: input gradients", self.products.grad_input, dz, lin.weight,
                                   out=b["dx"])
            if update is not None:
                if not self._timed("gradient check", all_finite, [p.grad for p in self.params[k]]):
                    return mse, "gradient"
                self._timed("Adam", update, self.params[k])
        return mse, None


@torch.no_grad()
def stages_alone(step: TimedStep, update: LayerAdam, x: torch.Tensor,
                 repeats: int = 100) -> dict[str, float]:
    """Microseconds per step of each stage run by itself, `repeats` times in a row on one batch:
    what it costs while its data stays in cache and no other stage runs between its calls. Their
    sum bounds from below any schedule of these same kernels."""
    x, bufs, _ = step.prepare(x)
    step(x)
    inputs = [x] + [b["y"] for b in bufs[:-1]]
    grads = [torch.randn_like(b["z"]) for b in bufs]
    pairs = [(k, lin, b) for k, ((lin, _, _), b) in enumerate(zip(step.layers, bufs))]
    products = step.products
    stages = {
        "products: forward": lambda: [products.linear(inputs[k], lin.weight, lin.bias, out=b["z"])
                                      for k, lin, b in pairs],
        "products: weight gradients": lambda: [products.grad_weight(grads[k], inputs[k], out=lin.weight.grad)
                                               for k, lin, _ in pairs],
        "products: input gradients": lambda: [products.grad_input(grads[k], lin.weight, out=b["dx"])
                                              for k, lin, b in pairs if k > 0],
        "BatchNorm + ReLU forward": lambda: [step.normalize(k, b) for k, _, b in pairs],
        "BatchNorm + ReLU backward": lambda: [step.normalize_backward(k, b, grads[k]) for k, _, b in pairs],
        "bias gradients": lambda: [torch.sum(grads[k], dim=0, out=lin.bias.grad) for k, lin, _ in pairs],
        "gradient check": lambda: [all_finite(params) for params in step.params],
        "Adam": lambda: [update(params) for params in step.params],
    }
    alone = {}
    for stage, run in stages.items():
        for _ in range(5):
            run()
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        alone[stage] = 1e6 * (time.perf_counter() - started) / repeats
    return alone


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--matmul", default="onednn", help="backend of aelab.matmul (default onednn)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="(default: torch's)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--adam", choices=["layers", "after"], default="layers",
                   help="each layer's check and update inside the backward pass, as fit runs it "
                        "(default), or both after it")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = load_dataset("fashion-mnist", log=lambda line: None, progress=False).train_images
    torch.manual_seed(0)
    model = create_model(resolve_config("seed").model)
    optimizer = make_optimizer(model, 1e-3, torch.device("cpu"))
    step = TimedStep(model, args.matmul)
    update = LayerAdam(optimizer) if args.adam == "layers" else None
    batch, n = 128, len(images) // 128
    sums = torch.zeros(3, dtype=torch.float64)
    for _ in range(args.epochs):
        step.seconds.clear()
        perm = torch.randperm(len(images))
        started = time.perf_counter()
        for b in range(n):
            idx = perm[b * batch:(b + 1) * batch]
            x = step._timed("batch", lambda idx=idx: to_float_batch(images.index_select(0, idx)))
            if update is not None:
                loss, parts, _ = step.train_step(x, update)
            else:
                loss, parts = step(x)
                step._timed("gradient check", _stop_if_not_finite, model, loss, 1, b + 1, 1e-3)
                step._timed("Adam", optimizer.step)
            sums[:-1] += torch.stack([loss.detach(), parts["mse"]]).double() * len(x)
            sums[-1] += len(x)
        total = time.perf_counter() - started
    print(f"{args.threads} thread(s), {args.matmul} matmul, Adam {args.adam}: "
          f"{1e6 * total / n:.0f} us per step ({total:.2f} s for {n} steps, no validation)")
    alone = stages_alone(step, update or LayerAdam(optimizer), x)
    print("| stage | us per step | alone, caches hot |\n|---|---:|---:|")
    for stage, seconds in step.seconds.most_common():
        print(f"| {stage} | {1e6 * seconds / n:.0f} | {alone.get(stage, float('nan')):.0f} |")
    products = sum(v for k, v in alone.items() if k.startswith("products"))
    print(f"alone: the products {products:.0f} us, everything timed alone {sum(alone.values()):.0f} us "
          f"(the bound for these kernels in any order; batch and loss not included)")


if __name__ == "__main__":
    main()
