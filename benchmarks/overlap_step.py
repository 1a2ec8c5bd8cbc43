"""Can a second core speed up the seed model's CPU step without OpenMP? An experiment, not a feature.

    python benchmarks/overlap_step.py           # idle machine
    python benchmarks/overlap_step.py --busy    # with one busy-looping process beside it

aelab trains on one thread (see benchmarks/README.md: two OpenMP threads either wake each other
~100 times a step, or spin and stall a shared machine). This tries the other way to use two
cores: two Python threads, each running single-threaded torch ops (which release the GIL), split
the step by task. The main thread runs the forward pass and, backwards, each layer's BatchNorm
gradient and input gradient (the critical path); a worker thread takes each layer's weight
gradient and its fused Adam update as soon as they are free to run, and half of the two large
forward GEMMs. Every op is the one `aelab.dense_step.DenseStep` runs on the same inputs, so the
weights stay bit-identical to the one-thread step (checked below).

It prints ms per step (batch 128; median of 5 blocks of 100 steps) for the one-thread hand-written
step + fused Adam and for this two-thread schedule, the round trip between two Python threads,
one 784 -> 512 GEMM alone and beside a second one, and whether 1 and 2 OpenMP threads give the
same weights after 20 steps.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import queue
import statistics
import threading
import time

import torch
from torch.optim.adam import adam as functional_adam

from aelab.dense_step import DenseStep
from aelab.models import Autoencoder
from aelab.optim import make_optimizer


class Worker:
    """One daemon thread running queued callables in order; `wait()` returns as each one ends and
    raises what it raised (so a failing task never leaves the main thread waiting forever)."""

    def __init__(self) -> None:
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, daemon=True).start()

    @torch.no_grad()  # grad mode is per thread
    def _loop(self) -> None:
        while True:
            task = self.tasks.get()
            try:
                task()
                self._done.put(None)
            except BaseException as exc:  # handed to the waiting thread
                self._done.put(exc)

    def wait(self) -> None:
        exc = self._done.get()
        if exc is not None:
            raise exc


class OverlappedStep(DenseStep):
    """`DenseStep` + the optimizer step, with weight gradients and Adam on a worker thread."""

    def __init__(self, model: Autoencoder, optimizer: torch.optim.Adam) -> None:
        """`optimizer` must have stepped once (after a DenseStep call): this updates its state."""
        super().__init__(model)
        if any(p.grad is None or p not in optimizer.state for p in model.parameters()):
            raise ValueError("run one DenseStep and optimizer.step() first: Adam's state must exist")
        self.optimizer, self.worker = optimizer, Worker()
        self.groups = [[lin.weight, lin.bias, bn.weight, bn.bias] for lin, bn, _ in self.layers]

    def _adam(self, k: int) -> None:
        """The fused Adam update of layer k's parameters alone (same kernel, same state)."""
        params, g = self.groups[k], self.optimizer.param_groups[0]
        state = [self.optimizer.state[p] for p in params]
        functional_adam(params, [p.grad for p in params], [s["exp_avg"] for s in state],
                        [s["exp_avg_sq"] for s in state], [], [s["step"] for s in state], fused=True,
                        amsgrad=False, beta1=g["betas"][0], beta2=g["betas"][1], lr=g["lr"],
                        weight_decay=g["weight_decay"], eps=g["eps"], maximize=False)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        bufs, diff = self._buffers_for(x)
        tasks, wait = self.worker.tasks, self.worker.wait
        inputs, a = [], x
        for k, ((lin, _, _), b) in enumerate(zip(self.layers, bufs)):
            inputs.append(a)
            z, h = b["z"], lin.out_features // 2
            if lin.in_features * lin.out_features > 200_000:  # 784 <-> 512: the worker takes half
                tasks.put(lambda a=a, z=z, lin=lin, h=h:
                          torch.addmm(lin.bias[h:], a, lin.weight[h:].t(), out=z[:, h:]))
                torch.addmm(lin.bias[:h], a, lin.weight[:h].t(), out=z[:, :h])
                wait()
            else:
                torch.addmm(lin.bias, a, lin.weight.t(), out=z)
            a = self.normalize(k, b)
        mse, grad = self.mse_and_grad(a, x, diff)
        posted = 0
        for k in range(len(self.layers) - 1, 0, -1):
            lin, b = self.layers[k][0], bufs[k]
            dz = self.normalize_backward(k, b, grad)
            tasks.put(lambda lin=lin, dz=dz, inp=inputs[k]: self.weight_grads(lin, dz, inp))
            grad = torch.mm(dz, lin.weight, out=b["dx"])           # reads W before Adam changes it
            tasks.put(lambda k=k: self._adam(k))
            posted += 2
        # the first layer: nothing else is left for the main thread, so it takes this one itself
        dz = self.normalize_backward(0, bufs[0], grad)
        self.weight_grads(self.layers[0][0], dz, inputs[0])
        self._adam(0)
        for _ in range(posted):
            wait()
        return mse


def ms_per_step(step, blocks: int = 5, steps: int = 100) -> float:
    for _ in range(30):
        step()
    times = []
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - started) / steps * 1e3)
    return statistics.median(times)


def _burn() -> None:
    while True:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", action="store_true", help="run one busy-looping process beside it")
    if p.parse_args().busy:
        multiprocessing.Process(target=_burn, daemon=True).start()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Autoencoder()
    optimizer = make_optimizer(model, 1e-3, torch.device("cpu"))
    batches = [torch.rand(128, 784) for _ in range(20)]
    hand = DenseStep(model)
    hand(batches[0])
    optimizer.step()  # creates Adam's state, which the overlapped step updates in place
    twin = copy.deepcopy(model)
    twin_optimizer = make_optimizer(twin, 1e-3, torch.device("cpu"))
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    overlapped, twin_hand = OverlappedStep(model, optimizer), DenseStep(twin)
    for x in batches:
        overlapped(x)
        twin_hand(x)
        twin_optimizer.step()
    same = all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    print(f"weights after 20 steps, overlapped vs one thread: {'bit-identical' if same else 'DIFFERENT'}")

    x = batches[0]
    print("| step, batch 128 | ms |\n|---|---:|")
    for label, step in [("one thread: DenseStep + fused Adam", lambda: (twin_hand(x), twin_optimizer.step())),
                        ("two Python threads: OverlappedStep", lambda: overlapped(x))] * 2:
        print(f"| {label} | {ms_per_step(step):.2f} |", flush=True)

    worker = Worker()
    started = time.perf_counter()
    for _ in range(2000):
        worker.tasks.put(lambda: None)
        worker.wait()
    print(f"\nround trip main -> worker -> main: {(time.perf_counter() - started) / 2000 * 1e6:.0f} us")
    a, w, out, out2 = torch.rand(128, 784), torch.rand(512, 784), torch.empty(128, 512), torch.empty(128, 512)
    gemm = lambda o=out: torch.mm(a, w.t(), out=o)  # noqa: E731
    alone = ms_per_step(gemm, steps=200) * 1e3
    worker.tasks.put(lambda: [torch.mm(a, w.t(), out=out2) for _ in range(3000)])
    beside = ms_per_step(gemm, steps=200) * 1e3
    worker.wait()
    print(f"784 -> 512 GEMM, batch 128: {alone:.0f} us alone, {beside:.0f} us beside a second one")

    m1 = Autoencoder()
    m2 = copy.deepcopy(m1)
    for model_, threads in [(m1, 1), (m2, 2)]:
        torch.set_num_threads(threads)
        opt, step = make_optimizer(model_, 1e-3, torch.device("cpu")), DenseStep(model_)
        for x in batches:
            step(x)
            opt.step()
    diff = max((p - q).abs().max().item() for p, q in zip(m1.parameters(), m2.parameters()))
    print(f"1 vs 2 OpenMP threads, 20 steps: largest weight difference {diff:.2g}")


if __name__ == "__main__":
    main()
