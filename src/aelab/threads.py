"""How many CPU threads to train on: `--threads N`, or `--threads auto` measured on the real step.

    probe = StepProbe(model, train_u8, batch_size=128, lr=1e-3, hand_written=True)
    cfg, info = resolve(cfg, probe, world=1, log=print)
    cfg.train.threads_chosen     # 2: what the engine trains on; config.json records it
    watch = Watch(probe, cfg.train.threads_chosen, thread_limit(), log=print)
    watch.epoch_done(record)     # after each epoch: says so when an epoch got much slower

`auto` times a few training steps of the run's own model, optimizer, batch size and step (the
hand-written dense step or autograd, fp32 or bf16) on a throwaway copy, at 1, 2, 4, ... threads up
to the cores this process may run on (its CPU affinity; at most $OMP_NUM_THREADS when that is
set), interleaving the counts over three rounds, and picks the fastest: the smallest count within
3% of the best median step time, since more threads cost more CPU and suffer first when another
process wants a core. The copy has its own optimizer and the measurement runs on a forked RNG, so
the training that follows is exactly the one `--threads N` with the chosen N gives.

The count never changes during a run: the thread count changes how float sums are split, so
a run whose count changed mid-way could only be repeated by replaying that schedule. When an
epoch takes much longer than the fastest one so far (another process started), `Watch` measures
the counts again and says which would be fastest now, and keeps training on the chosen one.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from .config import Config, replace_train
from .dense_step import DenseStep
from .engine import make_optimizer, to_float_batch

__all__ = ["available_cores", "thread_limit", "candidates", "StepProbe", "choose", "resolve", "Watch"]

TIE = 0.03          # a larger count must be more than 3% faster than a smaller one to be chosen
SLOWER = 1.5        # an epoch this much slower than the fastest so far is reported ...
RECOVERED = 1.2     # ... once, until one is back within this of the fastest


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask), else os.cpu_count()."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_limit() -> int:
    """The most threads auto tries: the available cores, at most $OMP_NUM_THREADS when set."""
    cores = available_cores()
    value = os.environ.get("OMP_NUM_THREADS", "").strip().split(",")[0]
    return min(cores, int(value)) if value.isdigit() and int(value) > 0 else cores


def candidates(limit: int) -> list[int]:
    """1, 2, 4, ... below `limit`, and `limit` itself."""
    counts, n = [], 1
    while n < limit:
        counts.append(n)
        n *= 2
    return counts + [limit]


class StepProbe:
    """Times the run's training step on a copy of its model at given thread counts.

    One step is what `aelab.engine.fit` does per batch on CPU: index and convert a batch, the
    gradients (`DenseStep` or autograd), the finiteness check, the optimizer step.
    """

    def __init__(self, model: nn.Module, train_u8: torch.Tensor, batch_size: int, lr: float,
                 *, hand_written: bool, precision: str = "fp32") -> None:
        self.model, self.lr, self.hand_written = model, lr, hand_written
        self.precision = precision
        gen = torch.Generator().manual_seed(0)
        n = min(batch_size, len(train_u8))
        self.train_u8 = train_u8
        self.idx = torch.randperm(len(train_u8), generator=gen)[:n]

    def _step_fn(self) -> Callable[[], None]:
        model = copy.deepcopy(self.model)
        model.train()
        optimizer = make_optimizer(model, self.lr, torch.device("cpu"))
        grads = DenseStep(model) if self.hand_written else None
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
        params = list(model.parameters())

        def step() -> None:
            x = to_float_batch(self.train_u8.index_select(0, self.idx))
            if grads is not None:
                loss, _ = grads(x)
            else:
                with autocast:
                    loss, _ = model.loss(x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            loss.item()
            torch.isfinite(torch.stack(torch._foreach_norm([p.grad for p in params]))).all()
            optimizer.step()
        return step

    def measure(self, counts: list[int], rounds: int = 3, budget_s: float = 1.5) -> dict[int, float]:
        """Median milliseconds per step at each count, over `rounds` interleaved rounds.

        Each round visits every count still in the race (in a rotated order), runs one warm-up step
        there and then times steps for about budget_s / (rounds * len(counts)) seconds (3 to 20
        steps, at least one). A count slower than twice the fastest after a round drops out: on a
        loaded machine spinning OpenMP threads can make a step 100x slower, and measuring them
        longer would only cost time.
        """
        old = torch.get_num_threads()
        times: dict[int, list[float]] = {n: [] for n in counts}
        share = budget_s / (rounds * len(counts))
        try:
            with torch.random.fork_rng(devices=[]):
                step = self._step_fn()
                torch.set_num_threads(counts[0])
                for _ in range(2):  # the first steps allocate
                    step()
                racing = list(counts)
                for r in range(rounds):
                    for n in racing[r % len(racing):] + racing[:r % len(racing)]:
                        torch.set_num_threads(n)
                        step()
                        started, before = time.perf_counter(), len(times[n])
                        while True:
                            t = time.perf_counter()
                            step()
                            times[n].append(time.perf_counter() - t)
                            done, spent = len(times[n]) - before, time.perf_counter() - started
                            if done >= 20 or spent > 2 * share or (done >= 3 and spent > share):
                                break
                    best = min(statistics.median(times[n]) for n in racing)
                    racing = [n for n in racing if statistics.median(times[n]) <= 2 * best]
        finally:
            torch.set_num_threads(old)
        return {n: 1e3 * statistics.median(t) for n, t in times.items()}


def choose(step_ms: dict[int, float], tie: float = TIE) -> int:
    """The smallest count whose time is within `tie` of the fastest."""
    best = min(step_ms.values())
    return min(n for n, ms in step_ms.items() if ms <= best * (1 + tie))


def _policy() -> str:
    return os.environ.get("OMP_WAIT_POLICY") or "unset"


def _times(step_ms: dict[int, float]) -> str:
    return ", ".join(f"{n} thread{'s' * (n > 1)} {ms:.2f}" for n, ms in step_ms.items())


def resolve(cfg: Config, probe: StepProbe | None, *, world: int,
            log: Callable[[str], None]) -> tuple[Config, dict]:
    """`cfg` with `train.threads_chosen` set for a new run, and what was measured (for config.json).

    `probe` times the run's step on CPU; None on a GPU, where nothing is chosen. A number in
    `threads` is taken as it is; under torchrun (`world` > 1) auto means 1 thread per process, as
    it does when only one core (or OMP_NUM_THREADS=1) is available; a config already holding a
    choice keeps it. `log` gets one line when something was measured.
    """
    t = cfg.train
    info: dict = {"requested": t.threads, "cores": available_cores(), "omp_wait_policy": _policy()}
    if t.threads_chosen is not None or probe is None:
        return cfg, {**info, "chosen": t.threads_chosen}
    if isinstance(t.threads, int):
        return replace_train(cfg, threads_chosen=t.threads), {**info, "chosen": t.threads}
    limit = thread_limit()
    if world > 1 or limit == 1:  # nothing to measure (and nothing said): one thread
        return replace_train(cfg, threads_chosen=1), {**info, "chosen": 1, "limit": limit}
    started = time.perf_counter()
    step_ms = probe.measure(candidates(limit))
    seconds = time.perf_counter() - started
    chosen = choose(step_ms)
    log(f"aelab: threads: auto chose {chosen} (ms per training step, median: {_times(step_ms)}; "
        f"{info['cores']} cores, OMP_WAIT_POLICY {info['omp_wait_policy']})")
    measured = {str(n): round(ms, 3) for n, ms in step_ms.items()}
    return replace_train(cfg, threads_chosen=chosen), {**info, "chosen": chosen, "limit": limit,
                                                        "step_ms": measured, "seconds": round(seconds, 3)}


class Watch:
    """Says when an epoch runs much slower than the fastest so far, with the counts measured anew."""

    def __init__(self, probe: StepProbe | None, chosen: int, limit: int, log: Callable[[str], None]) -> None:
        self.probe, self.chosen, self.limit, self.log = probe, chosen, limit, log
        self.fastest = float("inf")
        self.reported = False

    def epoch_done(self, record: dict) -> str | None:
        """Call after each epoch with its metrics record; returns the line it logged, if any."""
        seconds = record["seconds"]
        if seconds <= RECOVERED * self.fastest:
            self.reported = False
        slower = seconds / self.fastest
        self.fastest = min(self.fastest, seconds)
        if self.reported or not slower > SLOWER:
            return None
        self.reported = True
        line = (f"aelab: warning: epoch {record['epoch']} took {seconds:.1f} s, {slower:.1f}x the fastest "
                f"epoch so far (another process may want these cores)")
        if self.probe is not None and self.limit > 1:
            now = self.probe.measure(candidates(self.limit), budget_s=0.5)
            faster = choose(now)
            line += f"; now {_times(now)} ms per step"
            if faster != self.chosen:
                line += (f": {faster} would be faster now; this run keeps {self.chosen} so that it "
                         f"repeats exactly (a new run can pass --threads {faster})")
        self.log(line)
        return line
