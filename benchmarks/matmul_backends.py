"""GFLOP/s of each matmul backend of aelab.matmul at the seed model's shapes, one thread and all cores.

    python benchmarks/matmul_backends.py          # about 20 s

For every Linear layer of the seed model (784-512-256-128 and back) and each of the three products
of its training step (forward, input gradient, weight gradient) at batch 128: the median of 5
blocks of calls, in GFLOP/s (a multiply-add counts 2), and the sum of the step's products in ms.
Why it exists: MKL picks its kernels by CPU vendor, so which backend is faster depends on the chip
(`--matmul auto` measures the whole step instead; this shows where the difference comes from).
"""

from __future__ import annotations

import statistics
import time
from functools import partial

import torch

from aelab.matmul import MATMULS, available_backends
from aelab.models import create_model
from aelab.presets import resolve_config

BATCH = 128


def seconds_per_call(fn, blocks: int = 5, block_seconds: float = 0.1) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(blocks):
        calls, started = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - started < block_seconds:
            fn()
            calls += 1
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times)


def main() -> None:
    model = create_model(resolve_config("seed").model)
    shapes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    gen = torch.Generator().manual_seed(0)
    cores = torch.get_num_threads()
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"batch {BATCH}, torch {torch.__version__}, CPU capability {capability}")
    print("| threads | backend | " + " | ".join(f"{i}->{o}" for i, o in shapes) + " | step's products, ms |")
    print("|---:|---|" + "---:|" * (len(shapes) + 1))
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for backend in available_backends():
            products, cells, total = MATMULS.get(backend), [], 0.0
            for k, (i, o) in enumerate(shapes):
                x, w = torch.randn(BATCH, i, generator=gen), torch.randn(o, i, generator=gen)
                b, g = torch.randn(o, generator=gen), torch.randn(BATCH, o, generator=gen)
                calls = [partial(products.linear, x, w, b, out=torch.empty(BATCH, o)),
                         partial(products.grad_weight, g, x, out=torch.empty(o, i))]
                if k > 0:  # the first layer's input (the image) needs no gradient
                    calls.append(partial(products.grad_input, g, w, out=torch.empty(BATCH, i)))
                seconds = [seconds_per_call(c) for c in calls]
                total += sum(seconds)
                cells.append(f"{2 * BATCH * i * o * len(calls) / sum(seconds) / 1e9:.0f}")
            print(f"| {threads} | {backend} | " + " | ".join(cells) + f" | {1e3 * total:.2f} |", flush=True)
    print("cells: GFLOP/s of the layer's products together")


if __name__ == "__main__":
    main()
