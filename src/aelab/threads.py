"""How many CPU threads to train on, and with which matrix products: measured on the real step.

    probe = StepProbe(model, train_u8, batch_size=128, lr=1e-3, hand_written=True)
    cfg, info = resolve(cfg, probe, world=1, log=print)
    cfg.train.threads_chosen     # 2: what the engine trains on; config.json records it
    cfg.train.matmul_chosen      # "onednn": the backend of the hand-written step (aelab.matmul)
    watch = Watch(probe, (2, "onednn"), thread_limit(), log=print)
    watch.epoch_done(record)     # after each epoch: says so when an epoch got much slower

`--threads auto` and `--matmul auto` (the defaults) time a few training steps of the run's own
model, optimizer, batch size and step (the hand-written dense step or autograd, fp32 or bf16) on
a throwaway copy, at 1, 2, 4, ... threads up to the cores this process may run on (its CPU
affinity; at most $OMP_NUM_THREADS when that is set), and, for the hand-written step, with each
matmul backend this build runs (at most those named in $AELAB_MATMUL, e.g. `torch`), interleaving
the settings over three rounds, and pick the fastest: the smallest count, then torch's own
products, within 3% of the best median step time, since more threads cost more CPU and suffer
first when another process wants a core. The copy has its own optimizer and the measurement runs
on a forked RNG, so the training that follows is exactly the one `--threads N --matmul M` with
the chosen N and M gives.

The setting never changes during a run: the thread count and the backend change how float sums
are split, so a run whose setting changed mid-way could only be repeated by replaying that
schedule. When an epoch takes much longer than the fastest one so far (another process started),
`Watch` measures the settings again and says which would be fastest now, and keeps training on
the chosen one.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from .checks import all_finite
from .config import Config, replace_train
from .dense_step import DenseStep
from .engine import to_float_batch
from .errors import AelabError
from .matmul import AUTO, MATMULS, available_backends
from .optim import layer_adam, make_optimizer

__all__ = ["Setting", "available_cores", "thread_limit", "candidates", "matmul_limit", "StepProbe",
           "choose", "resolve", "matmul_of", "Watch"]

Setting = tuple[int, str]   # (CPU threads, matmul backend)
TIE = 0.03          # a larger count must be more than 3% faster than a smaller one to be chosen
SLOWER = 1.5        # an epoch this much slower than the fastest so far is reported ...
SLOWER_BY_S = 1.0   # ... and by at least this many seconds (a 0.1 s epoch's jitter is no news) ...
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


def matmul_limit() -> list[str]:
    """The backends `--matmul auto` tries: those this build runs, only those in $AELAB_MATMUL
    (comma-separated names) when it is set."""
    value = os.environ.get("AELAB_MATMUL", "").strip()
    if not value:
        return available_backends()
    names = [name.strip() for name in value.split(",") if name.strip()]
    for name in names:
        if name not in MATMULS.names():
            raise AelabError(f"AELAB_MATMUL={value!r}: unknown matmul backend {name!r}; "
                             f"choose from {', '.join(MATMULS.names())}")
    runs = available_backends()
    return [name for name in MATMULS.names() if name in names and name in runs] or ["torch"]


def matmul_of(cfg: Config) -> str:
    """The backend of the run's hand-written step: what was chosen, else what was asked for, else
    torch (a run from before aelab chose its matmul)."""
    t = cfg.train
    return t.matmul_chosen or (t.matmul if t.matmul != AUTO else "torch")


class StepProbe:
    """Times the run's training step on a copy of its model at given settings (threads, matmul).

    One step is what `aelab.engine.fit` does per batch on CPU: index and convert a batch, the
    gradients (`DenseStep` with the setting's backend, or autograd), the finiteness check, the
    optimizer step (for the hand-written step: layer by layer inside it, `DenseStep.train_step`).
    """

    def __init__(self, model: nn.Module, train_u8: torch.Tensor, batch_size: int, lr: float,
                 *, hand_written: bool, precision: str = "fp32") -> None:
        self.model, self.lr, self.hand_written = model, lr, hand_written
        self.precision = precision
        gen = torch.Generator().manual_seed(0)
        n = min(batch_size, len(train_u8))
        self.train_u8 = train_u8
        self.idx = torch.randperm(len(train_u8), generator=gen)[:n]

    def backends(self) -> list[str]:
        """The matmul backends auto chooses from: the hand-written step's, else torch's alone."""
        return matmul_limit() if self.hand_written else ["torch"]

    def _step_fns(self, backends: list[str]) -> dict[str, Callable[[], None]]:
        """One step function per backend, all training one copy of the model."""
        model = copy.deepcopy(self.model)
        model.train()
        optimizer = make_optimizer(model, self.lr, torch.device("cpu"))
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
        params = list(model.parameters())

        update = layer_adam(optimizer) if self.hand_written else None

        def step_with(grads: DenseStep | None) -> Callable[[], None]:
            def step() -> None:
                x = to_float_batch(self.train_u8.index_select(0, self.idx))
                if grads is not None and update is not None:  # what fit runs for this model
                    grads.train_step(x, update)
                    return
                if grads is not None:
                    loss, _ = grads(x)
                else:
                    with autocast:
                        loss, _ = model.loss(x)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                loss.item()
                all_finite([p.grad for p in params])
                optimizer.step()
            return step
        return {m: step_with(DenseStep(model, m) if self.hand_written else None) for m in backends}

    def measure(self, settings: list[Setting], rounds: int = 3,
                budget_s: float = 1.5) -> dict[Setting, float]:
        """Median milliseconds per step at each setting, over `rounds` interleaved rounds.

        Each round visits every setting still in the race (in a rotated order), runs one warm-up
        step there and then times steps for about budget_s / (rounds * len(settings)) seconds (3 to
        20 steps, at least one). A setting slower than twice the fastest after a round drops out:
        on a loaded machine spinning OpenMP threads can make a step 100x slower, and measuring them
        longer would only cost time.
        """
        old = torch.get_num_threads()
        times: dict[Setting, list[float]] = {s: [] for s in settings}
        share = budget_s / (rounds * len(settings))
        try:
            with torch.random.fork_rng(devices=[]):
                steps = self._step_fns(list(dict.fromkeys(m for _, m in settings)))
                torch.set_num_threads(settings[0][0])
                for step in steps.values():
                    for _ in range(2):  # the first steps allocate
                        step()
                racing = list(settings)
                for r in range(rounds):
                    for setting in racing[r % len(racing):] + racing[:r % len(racing)]:
                        n, backend = setting
                        torch.set_num_threads(n)
                        steps[backend]()
                        started, before = time.perf_counter(), len(times[setting])
                        while True:
                            t = time.perf_counter()
                            steps[backend]()
                            times[setting].append(time.perf_counter() - t)
                            done, spent = len(times[setting]) - before, time.perf_counter() - started
                            if done >= 20 or spent > 2 * share or (done >= 3 and spent > share):
                                break
                    best = min(statistics.median(times[s]) for s in racing)
                    racing = [s for s in racing if statistics.median(times[s]) <= 2 * best]
        finally:
            torch.set_num_threads(old)
        return {s: 1e3 * statistics.median(t) for s, t in times.items()}


def _simpler(setting: Setting) -> tuple[int, int]:
    """Fewer threads first, then torch's own products before another backend."""
    n, backend = setting
    return n, MATMULS.names().index(backend)


def choose(step_ms: dict[Setting, float], tie: float = TIE) -> Setting:
    """The simplest setting (fewest threads, then torch) whose time is within `tie` of the fastest."""
    best = min(step_ms.values())
    return min((s for s, ms in step_ms.items() if ms <= best * (1 + tie)), key=_simpler)


def _policy() -> str:
    return os.environ.get("OMP_WAIT_POLICY") or "unset"


def describe(setting: Setting) -> str:
    n, backend = setting
    return f"{n} thread{'s' * (n > 1)}, {backend} matmul"


def _times(step_ms: dict[Setting, float]) -> str:
    """"torch matmul: 1 thread 9.01, 2 threads 6.45; onednn matmul: ..." (backends in registry order)."""
    parts = []
    for backend in MATMULS.names():
        counts = sorted((n, ms) for (n, m), ms in step_ms.items() if m == backend)
        if counts:
            times = ", ".join(f"{n} thread{'s' * (n > 1)} {ms:.2f}" for n, ms in counts)
            parts.append(f"{backend} matmul: {times}")
    return "; ".join(parts)


def settings_for(cfg: Config, probe: StepProbe, *, world: int) -> list[Setting]:
    """What auto measures for this run: every candidate count (1 under torchrun, or when one core
    or OMP_NUM_THREADS=1 is all there is) with every backend, each fixed where the config fixes it."""
    t = cfg.train
    if t.threads_chosen is not None:
        counts = [t.threads_chosen]
    elif isinstance(t.threads, int):
        counts = [t.threads]
    else:
        counts = [1] if world > 1 else candidates(thread_limit())
    backends = ([t.matmul_chosen] if t.matmul_chosen is not None
                else [t.matmul] if t.matmul != AUTO else probe.backends())
    return [(n, m) for n in counts for m in backends]


def resolve(cfg: Config, probe: StepProbe | None, *, world: int,
            log: Callable[[str], None]) -> tuple[Config, dict]:
    """`cfg` with `train.threads_chosen` and `train.matmul_chosen` set for a new run, and what was
    measured (for config.json).

    `probe` times the run's step on CPU; None on a GPU, where nothing is chosen. A number in
    `threads` and a backend in `matmul` are taken as they are; with one setting left there is
    nothing to measure (and nothing said); a config already holding a choice keeps it. `log` gets
    one line when something was measured.
    """
    t = cfg.train
    info: dict = {"requested": t.threads, "cores": available_cores(), "omp_wait_policy": _policy(),
                  "matmul_requested": t.matmul}
    if probe is None:
        return cfg, {**info, "chosen": t.threads_chosen, "matmul": t.matmul_chosen}
    settings = settings_for(cfg, probe, world=world)
    if len(settings) == 1:
        (n, backend), = settings
        return (replace_train(cfg, threads_chosen=n, matmul_chosen=backend),
                {**info, "chosen": n, "matmul": backend, "limit": thread_limit()})
    started = time.perf_counter()
    step_ms = probe.measure(settings)
    seconds = time.perf_counter() - started
    n, backend = choose(step_ms)
    log(f"aelab: threads: auto chose {describe((n, backend))} (ms per training step, median: "
        f"{_times(step_ms)}; {info['cores']} cores, OMP_WAIT_POLICY {info['omp_wait_policy']})")
    measured: dict[str, dict[str, float]] = {}
    for (count, name), ms in step_ms.items():
        measured.setdefault(name, {})[str(count)] = round(ms, 3)
    return replace_train(cfg, threads_chosen=n, matmul_chosen=backend), {
        **info, "chosen": n, "matmul": backend, "limit": thread_limit(), "step_ms": measured,
        "seconds": round(seconds, 3)}


class Watch:
    """Says when an epoch runs much slower than the fastest so far, with the settings measured anew."""

    def __init__(self, probe: StepProbe | None, chosen: Setting, limit: int,
                 log: Callable[[str], None]) -> None:
        self.probe, self.chosen, self.limit, self.log = probe, chosen, limit, log
        self.fastest = float("inf")
        self.reported = False

    def epoch_done(self, record: dict) -> str | None:
        """Call after each epoch with its metrics record; returns the line it logged, if any."""
        seconds = record["seconds"]
        if seconds <= RECOVERED * self.fastest:
            self.reported = False
        slower, by = seconds / self.fastest, seconds - self.fastest
        self.fastest = min(self.fastest, seconds)
        if self.reported or not (slower > SLOWER and by >= SLOWER_BY_S):
            return None
        self.reported = True
        line = (f"aelab: warning: epoch {record['epoch']} took {seconds:.1f} s, {slower:.1f}x the fastest "
                f"epoch so far (another process may want these cores)")
        settings = ([(n, m) for n in candidates(self.limit) for m in self.probe.backends()]
                    if self.probe is not None else [])
        if len(settings) > 1:
            now = self.probe.measure(settings, budget_s=0.5)
            faster = choose(now)
            line += f"; now {_times(now)} ms per step"
            if faster != self.chosen:
                line += (f": {describe(faster)} would be faster now; this run keeps "
                         f"{describe(self.chosen)} so that it repeats exactly (a new run can pass "
                         f"--threads {faster[0]} --matmul {faster[1]})")
        self.log(line)
        return line
