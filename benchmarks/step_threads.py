"""One training step of the seed model: autograd vs the hand-written step (with torch's and with
oneDNN's matrix products, aelab.matmul), by CPU thread setting.

    python benchmarks/step_threads.py            # idle machine
    python benchmarks/step_threads.py --busy     # with one busy-looping process beside it
    python benchmarks/step_threads.py --profile  # where one hand-written step goes (torch.profiler)

Each setting runs in a fresh process, because OpenMP reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once,
when torch loads. Prints milliseconds per step (batch 128, median of 5 blocks of 100 steps, a block
cut short after 3 s, so that a setting that collapses on a loaded machine still ends). Results and
what they mean: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

BLOCK_SECONDS = 3.0  # a block ends past this, after 2 steps or more (a collapsed setting: seconds a step)
SETTINGS = [  # (label, threads, environment)
    ("1 thread, passive", 1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, passive", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, libgomp's default (OMP_WAIT_POLICY unset)", 2, {}),
    ("2 threads, spin 10,000", 2, {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "10000"}),
    ("2 threads, spinning", 2, {"OMP_WAIT_POLICY": "ACTIVE"}),
]


def child(step_kind: str, threads: int, profile: bool = False) -> float:
    import torch

    from aelab.dense_step import DenseStep
    from aelab.models import Autoencoder
    from aelab.optim import make_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Autoencoder()
    optimizer = make_optimizer(model, 1e-3, torch.device("cpu"))
    x = torch.rand(128, 784)
    hand = DenseStep(model, "onednn" if step_kind == "onednn" else "torch")

    def step() -> None:
        if step_kind != "autograd":
            hand(x)
        else:
            loss, _ = model.loss(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()

    started = time.perf_counter()
    for _ in range(30):
        step()
        if time.perf_counter() - started > BLOCK_SECONDS:
            break
    if profile:
        from torch.profiler import profile as torch_profile
        with torch_profile() as prof:
            for _ in range(100):
                step()
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
        print("| op (self CPU time) | ms per step | calls per step |\n|---|---:|---:|")
        for e in rows:
            print(f"| {e.key} | {e.self_cpu_time_total / 100 / 1e3:.3f} | {e.count / 100:g} |")
    blocks = []
    for _ in range(5):
        started, steps = time.perf_counter(), 0
        while steps < 100 and (steps < 2 or time.perf_counter() - started < BLOCK_SECONDS):
            step()
            steps += 1
        blocks.append((time.perf_counter() - started) / steps * 1e3)
    return statistics.median(blocks)


def _burn() -> None:
    while True:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", action="store_true", help="run one busy-looping process beside each measurement")
    p.add_argument("--profile", action="store_true", help="profile the hand-written step on one thread")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.profile:
        import torch  # noqa: F401  (OpenMP reads its policy now; aelab's PASSIVE default applies)
        print(f"one thread, 100 steps; whole step {child('hand', 1, profile=True):.2f} ms")
        return
    if args.child:
        kind, threads = json.loads(args.child)
        print(child(kind, threads))
        return
    from aelab.matmul import available

    burner = multiprocessing.Process(target=_burn, daemon=True) if args.busy else None
    if burner:
        burner.start()
    try:
        print(f"ms per step, batch 128, seed model{' (one busy process beside it)' if args.busy else ''}")
        kinds = ["autograd", "hand"] + (["onednn"] if available("onednn") else [])
        print("| setting | autograd | hand-written, torch matmul | hand-written, onednn matmul |\n"
              "|---|---:|---:|---:|")
        for label, threads, env in SETTINGS:
            env = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | env
            ms = [float(subprocess.run([sys.executable, __file__, "--child", json.dumps([kind, threads])],
                                       env=env, capture_output=True, text=True, check=True).stdout)
                  for kind in kinds]
            print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in ms) + " |", flush=True)
    finally:
        if burner:
            burner.terminate()


if __name__ == "__main__":
    main()
