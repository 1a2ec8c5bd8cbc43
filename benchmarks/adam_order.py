"""Adam after the backward pass against Adam layer by layer inside it, interleaved in one process.

    python benchmarks/adam_order.py                 # 6 epochs each on 60,000 Fashion-MNIST images
    python benchmarks/adam_order.py --threads 1 --matmul torch

Two copies of the seed model, same initial weights, trained on the same batches in alternating
epochs (ABBA order, so a drift of the shared machine's speed hits both): one with
`DenseStep(x)`, the engine's gradient check and `optimizer.step()` after the backward pass, the
other with `DenseStep.train_step(x, LayerAdam(optimizer))`, which checks and updates each layer
as soon as its gradients exist. Prints ms per step of each epoch and the medians, and checks that
both copies end with identical weights.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from aelab.data import load_dataset
from aelab.dense_step import DenseStep
from aelab.engine import _stop_if_not_finite, to_float_batch
from aelab.models import create_model
from aelab.optim import LayerAdam, make_optimizer
from aelab.presets import resolve_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--matmul", default="onednn", help="backend of aelab.matmul (default onednn)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="(default: torch's)")
    p.add_argument("--epochs", type=int, default=6, help="epochs of each order (default 6)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = load_dataset("fashion-mnist", log=lambda line: None, progress=False).train_images
    torch.manual_seed(0)
    after_model = create_model(resolve_config("seed").model)
    layers_model = copy.deepcopy(after_model)
    after_opt = make_optimizer(after_model, 1e-3, torch.device("cpu"))
    layers_opt = make_optimizer(layers_model, 1e-3, torch.device("cpu"))
    after_step, layers_step = DenseStep(after_model, args.matmul), DenseStep(layers_model, args.matmul)
    update = LayerAdam(layers_opt)

    def after(x: torch.Tensor) -> None:
        loss, _ = after_step(x)
        _stop_if_not_finite(after_model, loss, 1, 1, 1e-3)
        after_opt.step()

    def layers(x: torch.Tensor) -> None:
        _, _, found = layers_step.train_step(x, update)
        assert found is None, found

    n = len(images) // 128
    ms: dict[str, list[float]] = {"after the backward pass": [], "layer by layer": []}
    orders = [("after the backward pass", after), ("layer by layer", layers)]
    for epoch in range(args.epochs):
        perm = torch.randperm(len(images))
        for name, step in orders if epoch % 2 == 0 else orders[::-1]:
            started = time.perf_counter()
            for b in range(n):
                step(to_float_batch(images.index_select(0, perm[b * 128:(b + 1) * 128])))
            ms[name].append(1e3 * (time.perf_counter() - started) / n)
    same = all(torch.equal(a, b) for a, b in zip(after_model.state_dict().values(),
                                                 layers_model.state_dict().values()))
    print(f"{args.threads} thread(s), {args.matmul} matmul, {n} steps of 128 per epoch")
    for name, values in ms.items():
        print(f"{name}: {statistics.median(values):.2f} ms per step (median; epochs "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    a, b = (statistics.median(v) for v in ms.values())
    print(f"layer by layer / after = {b / a:.3f}; identical weights after both: {same}")


if __name__ == "__main__":
    main()
