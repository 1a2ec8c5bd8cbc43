"""How fast aelab trains, against the machine's compute floor and the tutorial's loop, in one run.

    python benchmarks/train_speed.py                     # CPU, Fashion-MNIST: about 25 minutes on 2 cores
    python benchmarks/train_speed.py --quick             # smoke test on a slice, about a minute
    python benchmarks/train_speed.py --device cuda       # the same on a GPU, with the CUDA-graph step
    python benchmarks/train_speed.py --variants bf16,compile   # also time --precision bf16, --compile

It measures, on the same 60,000 training images (Fashion-MNIST, or `--data random` of that shape):

* the compute floor: the model's GEMM FLOPs per epoch, counted from its Linear layers' shapes,
  divided by the GEMM throughput measured here with `torch.mm` at exactly those shapes and layouts,
  for training and for the validation pass (an epoch below is always train + validation), each
  GEMM at its fastest of one thread and all cores under each OpenMP wait policy;
* aelab's seconds per epoch (the `seed` preset through `aelab.training.train`) at each count of a
  threads axis (`--threads 1`, `2`, `4`, ... all cores) and with `--threads auto` (what `aelab
  train` does), under the wait policy the `aelab train` command sets, and `auto` under the other
  policy too; apart from them the figure and checkpoint it writes after every epoch;
* the baseline: the tutorial's loop as a user writes it (torchvision's `MNIST` dataset with
  `transforms.ToTensor()`, rebuilt step for step: a PIL image per item, converted to a float
  tensor, with its label; a `DataLoader` of batch 128 that shuffles; a tqdm bar; `loss.item()`
  every step; default Adam), at
  each count of the axis, under aelab's wait policy (`--loop-policy user`: the environment a plain
  `python` script gets, libgomp's default unless OMP_WAIT_POLICY is set); torch's default count
  is "the loop as users run it";
* all of that twice: on the machine as it is ("idle") and beside one busy process (a one-thread
  torch matmul loop started for those runs: "busy"); `--no-busy` skips the second;
* the validation MSE of both after the same epochs, and each one's peak memory (RSS);
* scaling: aelab's seconds per epoch against training-set size and batch size.

With `--device cuda` there is no threads axis and no busy process; instead the whole training
step also runs as one CUDA graph (`benchmarks/cuda_graph_step.py`), to see whether that pays.

Every measurement runs in a fresh subprocess (this file with `--child`), so peak RSS, thread
pools and the OpenMP wait policy (read once, when torch loads) do not leak between them. Repeats
interleave floor, aelab and baseline, idle and busy, so a change in other people's load slows each
alike; tables show medians over repeats. Wall-clock seconds are the result; CPU seconds (all
threads of the process) are shown beside them. Results go to `--json`, a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch  # each child's OpenMP wait policy comes from the environment its parent gives it

import aelab
from aelab.cli import wait_policy
from aelab.data import ImageData, load_dataset
from aelab.dense_step import DenseStep
from aelab.engine import evaluate_loss
from aelab.matmul import MATMULS, available_backends
from aelab.models import create_model
from aelab.presets import resolve_config
from aelab.threads import candidates
from aelab.training import train, trains_by_hand

BASELINE_BATCH = 128   # the tutorial's DataLoader batch size
VALID_BATCH = 1000     # aelab.engine.evaluate_loss's batch size, used for the validation floor
MB = 2 ** 20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Wall and CPU seconds (all threads of this process) since creation."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        _sync(self.device)
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


# --- the compute floor ---------------------------------------------------------------------------

def linear_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(in_features, out_features) of each Linear layer, input to output."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def gemm_flops(shapes: list[tuple[int, int]], n_train: int, n_valid: int) -> dict[str, float]:
    """GEMM FLOPs of one epoch; a multiply-add counts 2.

    Per image and layer (i -> o): forward 2*i*o; backward 2*i*o for the weight gradient and 2*i*o
    for the input gradient, except in the first layer, whose input (the image) needs no gradient
    and gets none from autograd. BatchNorm, ReLU, the loss and Adam are elementwise: they cost
    memory traffic rather than FLOPs and are left out, so the floor is a lower bound.
    """
    fwd = sum(2 * i * o for i, o in shapes)
    bwd = sum(2 * i * o * (1 if k == 0 else 2) for k, (i, o) in enumerate(shapes))
    return {"train": n_train * (fwd + bwd), "valid": n_valid * fwd,
            "forward_per_image": fwd, "backward_per_image": bwd}


def time_call(fn: Any, device: torch.device, block_seconds: float, blocks: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one `fn()`, timed in blocks of calls."""
    for _ in range(3):
        fn()
    clock, calls = Clock(device), 0
    while clock.read()[0] < block_seconds / 4 or calls < 3:
        fn()
        calls += 1
    per_block = max(3, 4 * calls)
    walls, cpus = [], []
    for _ in range(blocks):
        clock = Clock(device)
        for _ in range(per_block):
            fn()
        wall, cpu = clock.read()
        walls.append(wall / per_block)
        cpus.append(cpu / per_block)
    return statistics.median(walls), statistics.median(cpus)


def floor_backends(device: torch.device, dtype: torch.dtype) -> list[str]:
    """The GEMM implementations the floor times: torch.mm, and on CPU in fp32 every other backend of
    aelab.matmul this build runs (oneDNN: 2x MKL's speed on an AMD EPYC), so that no product aelab
    or the loop could call beats the floor."""
    if device.type != "cpu" or dtype != torch.float32:
        return ["torch"]
    return available_backends()


def _gemm_calls(backend: str, x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> dict[str, Any]:
    """An epoch's three GEMMs of one layer as zero-argument calls, in the layouts autograd uses."""
    if backend == "torch":
        return {"forward": lambda: torch.mm(x, w.t()), "grad_weight": lambda: torch.mm(g.t(), x),
                "grad_input": lambda: torch.mm(g, w)}
    products = MATMULS.get(backend)
    return {"forward": lambda: products.linear(x, w, None),
            "grad_weight": lambda: products.grad_weight(g, x),
            "grad_input": lambda: products.grad_input(g, w)}


def measure_floor(shapes: list[tuple[int, int]], batches: list[int], n_train: int, n_valid: int,
                  device: torch.device, dtype: torch.dtype, block_seconds: float, blocks: int) -> list[dict]:
    """One row per GEMM of an epoch and backend: its shape, how often an epoch calls it, wall and
    CPU seconds.

    The operands have the layouts autograd uses for `nn.Linear` (weight W of shape (o, i)):
    forward x @ W.T, input gradient g @ W, weight gradient g.T @ x. The validation pass is the
    forward GEMMs at evaluate_loss's batch of 1,000.
    """
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    rows = []
    for part, batch, n in [("valid", VALID_BATCH, n_valid)] + [("train", b, n_train) for b in batches]:
        for k, (i, o) in enumerate(shapes):
            w, x, g = rand(o, i), rand(batch, i), rand(batch, o)
            backward = ["grad_weight"] + (["grad_input"] if k > 0 else [])
            ops = ["forward"] + (backward if part == "train" else [])
            for backend in floor_backends(device, dtype):
                calls = _gemm_calls(backend, x, w, g)
                for op in ops:
                    wall, cpu = time_call(calls[op], device, block_seconds, blocks)
                    rows.append({"part": part, "batch": batch, "layer": k, "op": op, "in": i, "out": o,
                                 "backend": backend, "calls": n / batch, "seconds": wall,
                                 "cpu_seconds": cpu, "gflops": 2 * batch * i * o / wall / 1e9})
    return rows


def combine_floor(floors: list[dict], part: str, batch: int = 128, key: str = "seconds",
                  backend: str | None = None) -> float:
    """Seconds per epoch of `part` when every GEMM runs as fast as its best measured setting and
    backend (only `backend`'s rows when given)."""
    best: dict[tuple, float] = {}
    for f in floors:
        for r in f["rows"]:
            if backend is not None and r.get("backend", "torch") != backend:
                continue
            if r["part"] == part and (part == "valid" or r["batch"] == batch):
                k = (r["batch"], r["layer"], r["op"])
                best[k] = min(best.get(k, float("inf")), r[key] * r["calls"])
    return sum(best.values())


# --- the tutorial's loop, as a user writes it ----------------------------------------------------

class TutorialImages(torch.utils.data.Dataset):
    """The tutorial's data: `torchvision.datasets.MNIST(transform=transforms.ToTensor())`, done
    here without torchvision (it does not import beside this torch) by the same steps: each item
    is a PIL image made from the uint8 array, converted as ToTensor converts it (to a (1, 28, 28)
    float tensor in [0, 1]), with its label as an int."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images_u8, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import numpy as np
        from PIL import Image

        pic = Image.fromarray(self.images[i].numpy())                  # MNIST.__getitem__
        x = torch.from_numpy(np.array(pic, np.uint8, copy=True))         # ToTensor, for mode "L"
        x = x.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
        return x.to(dtype=torch.get_default_dtype()).div(255), int(self.labels[i])


class SeededShuffle(torch.utils.data.Sampler):
    """What `shuffle=True` does (a fresh `randperm` each epoch, at the same cost), drawn from a
    generator seeded like aelab's: with the same seed both train on the same batches in the same
    order, so their validation MSEs compare run for run instead of across data orders."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def baseline_training(data: ImageData, epochs: int, seed: int, device: torch.device, paired: bool) -> dict:
    """The tutorial's train and test loops: per epoch (train + validation) seconds and valid MSE.

    `paired`: shuffle in aelab's batch order (`SeededShuffle`) instead of `shuffle=True`.
    """
    from tqdm import tqdm

    devnull = open(os.devnull, "w")  # noqa: SIM115 (the child process ends right after)
    torch.manual_seed(seed)
    cfg = resolve_config("seed", {"seed": seed})
    model = create_model(cfg.model).to(device)  # the tutorial's Net, same initial weights as aelab's
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    criterion = torch.nn.MSELoss()
    train_images = TutorialImages(data.train_images, data.train_labels)
    if paired:
        train_loader = torch.utils.data.DataLoader(train_images, batch_size=BASELINE_BATCH,
                                                   sampler=SeededShuffle(len(train_images), seed))
    else:
        train_loader = torch.utils.data.DataLoader(train_images, batch_size=BASELINE_BATCH, shuffle=True)
    valid_loader = torch.utils.data.DataLoader(TutorialImages(data.test_images, data.test_labels),
                                               batch_size=BASELINE_BATCH, shuffle=False)
    records = []
    for epoch in range(1, epochs + 1):
        clock = Clock(device)
        model.train()
        train_loss = 0.0
        for x, _ in tqdm(train_loader, file=devnull):  # the tutorial's bar, drawn nowhere
            x = x.to(device).view(-1, 784)
            optimizer.zero_grad()
            loss = criterion(model(x), x)
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(x)
        model.eval()
        valid_loss = 0.0
        with torch.no_grad():
            for x, _ in valid_loader:
                x = x.to(device).view(-1, 784)
                valid_loss += criterion(model(x), x).item() * len(x)
        wall, cpu = clock.read()
        records.append({"epoch": epoch, "seconds": wall, "cpu_seconds": cpu,
                        "train_mse": train_loss / len(data.train_images),
                        "valid_mse": valid_loss / len(data.test_images)})
    return {"epochs": records, "valid_mse": records[-1]["valid_mse"]}


# --- aelab ---------------------------------------------------------------------------------------

def aelab_training(data: ImageData, epochs: int, seed: int, device: torch.device, batch_size: int,
                   overrides: dict[str, Any]) -> dict:
    """`aelab.training.train`, seed preset, into a temporary run folder.

    Per epoch, `seconds` is the engine's own (train + validation). The epoch's log line comes after
    its figure and before its checkpoint, so from one line to the next is one whole epoch with its
    I/O (`with_io`, from epoch 2 on, wall and CPU); `io_seconds` is that minus the engine's time.
    """
    cfg = resolve_config("seed", {"epochs": epochs, "seed": seed, "device": device.type,
                                  "batch_size": batch_size, **overrides})
    stamps: list[tuple[float, float]] = []

    def log(line: str) -> None:
        if line.startswith("epoch "):
            stamps.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as tmp:
        run = train(cfg, Path(tmp) / "run", data=data, quiet=False, log=log)
        threads = json.loads((Path(tmp) / "run" / "config.json").read_text()).get("threads", {})
    records = [{k: m[k] for k in ("epoch", "seconds", "train_mse", "valid_mse")} for m in run.metrics]
    with_io = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
    with_io_cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    valid_u8, model = data.test_images.to(device), run.model.to(device)
    # the validation pass as training ran it: a hand-written run's through its products, at its threads
    by_hand = trains_by_hand(cfg, model, device)
    loss_fn = DenseStep(model, threads.get("matmul") or "torch").evaluate if by_hand else None
    valid, old_threads = [], torch.get_num_threads()
    torch.set_num_threads(threads.get("chosen") or old_threads)
    for _ in range(3):
        clock = Clock(device)
        evaluate_loss(model, valid_u8, loss_fn=loss_fn)
        valid.append(clock.read()[0])
    torch.set_num_threads(old_threads)
    return {"epochs": records, "valid_mse": records[-1]["valid_mse"], "threads_chosen": threads.get("chosen"),
            "matmul_chosen": threads.get("matmul"),
            "threads_info": threads, "with_io_seconds": with_io, "with_io_cpu_seconds": with_io_cpu,
            "io_seconds": [w - r["seconds"] for w, r in zip(with_io, records[1:])],
            "valid_seconds": statistics.median(valid)}


# --- one measurement in a fresh process ----------------------------------------------------------

def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Restart VmHWM at the current RSS (Linux >= 4.0), so the next peak is the training's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def load_benchmark_data(name: str, n_train: int, n_valid: int) -> ImageData:
    if name == "random":
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (70000, 28, 28), dtype=torch.uint8, generator=gen)
        labels = torch.zeros(70000, dtype=torch.int64)
        data = ImageData("random", "random", images[:60000], labels[:60000], images[60000:], labels[60000:])
    else:
        data = load_dataset(name, log=lambda line: None, progress=False)
    return dataclasses.replace(data, train_images=data.train_images[:n_train].clone(),
                               train_labels=data.train_labels[:n_train].clone(),
                               test_images=data.test_images[:n_valid].clone(),
                               test_labels=data.test_labels[:n_valid].clone())


def child(spec: dict) -> dict:
    """Run the one measurement `spec` describes; return its results and memory figures."""
    device = torch.device(spec["device"])
    out: dict[str, Any] = {"kind": spec["kind"], "env": spec.get("env", {}),
                           "policy": os.environ.get("OMP_WAIT_POLICY") or "unset"}
    if spec["kind"] == "floor":
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        out["threads"] = torch.get_num_threads()
        shapes = linear_shapes(create_model(resolve_config("seed").model))
        dtype = torch.bfloat16 if spec.get("precision") == "bf16" else torch.float32
        out["rows"] = measure_floor(shapes, spec["batches"], spec["n_train"], spec["n_valid"], device, dtype,
                                    spec["block_seconds"], spec["blocks"])
        out["flops"] = gemm_flops(shapes, spec["n_train"], spec["n_valid"])
        return out
    # aelab chooses its own threads (--threads N or auto); the tutorial's loop runs on torch's
    # default unless the spec sets a count
    if spec["kind"] != "aelab" and isinstance(spec.get("threads"), int):
        torch.set_num_threads(spec["threads"])
    out["threads"] = spec.get("threads") or torch.get_num_threads()
    data = load_benchmark_data(spec["data"], spec["n_train"], spec["n_valid"])
    out["load_peak_mb"] = _proc_status_mb("VmHWM") or 0.0
    out["rss_before_mb"] = _proc_status_mb("VmRSS") or 0.0
    out["peak_reset"] = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if spec["kind"] == "baseline":
        out.update(baseline_training(data, spec["epochs"], spec["seed"], device, spec["paired"]))
    elif spec["kind"] == "cudagraph":
        from cuda_graph_step import graphed_training

        out.update(graphed_training(data, spec["epochs"], spec["seed"], device, spec["batch_size"],
                                    capture=spec.get("capture")))
    else:
        overrides = dict(spec.get("overrides", {}))
        if spec.get("threads") is not None:
            overrides["threads"] = spec["threads"]
        if spec.get("matmul"):
            overrides["matmul"] = spec["matmul"]
        out.update(aelab_training(data, spec["epochs"], spec["seed"], device, spec["batch_size"], overrides))
    train_peak = _proc_status_mb("VmHWM")
    if train_peak is None:  # not Linux: the whole process's peak
        import resource
        train_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_mb"] = max(out["load_peak_mb"], train_peak)
    out["train_adds_mb"] = train_peak - out["rss_before_mb"]
    out["dataset_mb"] = (data.train_images.nbytes + data.test_images.nbytes) / MB
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / MB
    return out


def child_env(changes: dict[str, str | None]) -> dict[str, str]:
    """This process's environment with `changes` applied; a None value removes the variable."""
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_child(spec: dict, retries: int = 2) -> dict:
    """`spec` measured in a fresh Python process; exits with its stderr when it fails. A child
    killed by a signal (on a shared machine, someone else's `pkill`) is run again, `retries` times."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=child_env(spec.get("env", {})))
    if proc.returncode < 0 and retries > 0:
        _say(f"  benchmark child {spec['kind']} was killed by signal {-proc.returncode}; running it again")
        return run_child(spec, retries - 1)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {spec['kind']} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "child_seconds": time.perf_counter() - started}


BUSY_CODE = """
import os
import torch
torch.set_num_threads(1)
parent = os.getppid()
a = torch.randn(512, 512)
while os.getppid() == parent:  # ends with the benchmark, however that is stopped
    a = torch.mm(a, a).clamp_(-1, 1)
"""


class BusyProcess:
    """One other process keeping one core busy while it is open: a one-thread torch matmul loop."""

    def __enter__(self) -> BusyProcess:
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env=child_env({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}))
        time.sleep(3.0)  # past torch's import: spinning when the measurement starts
        if self.proc.poll() is not None:
            raise SystemExit("the busy process exited at once")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# --- the whole benchmark -------------------------------------------------------------------------

def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


POLICIES = {"unset": None, "PASSIVE": "PASSIVE", "ACTIVE": "ACTIVE"}  # label -> OMP_WAIT_POLICY


def aelab_policy() -> str:
    """The OpenMP wait policy `aelab train` runs under here: the user's, else the one the CLI sets."""
    return os.environ.get("OMP_WAIT_POLICY") or wait_policy(["train"]) or "unset"


def user_policy() -> str:
    """The policy a plain `python tutorial.py` runs under here: the user's, else libgomp's default."""
    return os.environ.get("OMP_WAIT_POLICY") or "unset"


def _policy_env(label: str) -> dict[str, str | None]:
    return {"OMP_WAIT_POLICY": POLICIES.get(label, label)}


def floor_settings(args: argparse.Namespace) -> list[dict]:
    """Thread settings the floor tries; each GEMM counts at its fastest, so no setting aelab or
    the baseline could choose beats the floor: one thread, and all cores under each OpenMP wait
    policy (libgomp's default, passive, spinning: the last is the fastest on an idle machine).
    `--quick` tries torch's default only."""
    if args.device == "cuda" or args.quick:
        return [{}]
    cores = machine_info("cpu")["cores"]
    settings = [{"threads": 1}]
    if cores > 1:
        settings += [{"threads": cores, "env": _policy_env(label)} for label in POLICIES]
    return settings


def thread_axis(args: argparse.Namespace) -> list[int]:
    """Thread counts on the axis: --threads, else 1, 2, 4, ... and all cores (1 with --quick)."""
    if args.threads:
        return args.threads
    return [1] if args.quick else candidates(machine_info("cpu")["cores"])


def settings(args: argparse.Namespace) -> list[dict]:
    """What runs in each condition: aelab at each count and auto (and auto under the other wait
    policy, to decide the CLI's), the tutorial's loop at each count (its default among them)."""
    loop_policy = user_policy() if args.loop_policy == "user" else aelab_policy()
    if args.device == "cuda":
        return [{"kind": "aelab", "threads": None, "policy": aelab_policy()},
                {"kind": "baseline", "threads": None, "policy": loop_policy}]
    axis = thread_axis(args)
    ours = aelab_policy()
    other = "PASSIVE" if ours != "PASSIVE" else "unset"
    rows = [{"kind": "aelab", "threads": n, "policy": ours} for n in axis]
    rows.append({"kind": "aelab", "threads": "auto", "policy": ours})
    if not args.quick:
        rows.append({"kind": "aelab", "threads": "auto", "policy": ours, "matmul": "torch"})  # before oneDNN
        rows.append({"kind": "aelab", "threads": "auto", "policy": other})
    loop_axis = sorted(set(axis) | {torch.get_num_threads()}) if not args.quick else [torch.get_num_threads()]
    rows += [{"kind": "baseline", "threads": n, "policy": loop_policy} for n in loop_axis]
    return rows


def runs_in(condition: str, row: dict, args: argparse.Namespace) -> bool:
    """Everything runs in both conditions, except with --quick: idle without aelab's one-thread run,
    busy without the loop (the smoke test's time)."""
    if not args.quick:
        return True
    if condition == "idle":
        return not (row["kind"] == "aelab" and row["threads"] == 1)
    return row["kind"] == "aelab"


def key(row: dict) -> str:
    """A row's name in the results: kind, threads, policy (and aelab's matmul when the row fixes it)."""
    matmul = f" matmul={row['matmul']}" if row.get("matmul") else ""
    return f"{row['kind']} threads={row['threads']} policy={row['policy']}{matmul}"


def benchmark(args: argparse.Namespace) -> dict:
    n_train, n_valid = (2048, 500) if args.quick else (60000, 10000)
    sizes = [n_train // 2] if args.quick else [n_train // 8, n_train // 4, n_train // 2]
    batches = [64] if args.quick else [64, 256, 512, 1024]
    common = {"device": args.device, "data": args.data, "n_valid": n_valid}
    floor_spec = {"device": args.device, "kind": "floor", "n_train": n_train, "n_valid": n_valid,
                  "batches": [128] + batches if args.quick else [128],
                  "block_seconds": 0.01 if args.quick else 0.02, "blocks": 3 if args.quick else 5}
    floors = floor_settings(args)
    rows = settings(args)
    conditions = ["idle"] if args.device == "cuda" or args.no_busy else ["idle", "busy"]
    ours = {"kind": "aelab", "threads": None if args.device == "cuda" else "auto", "policy": aelab_policy()}
    loop = next(r for r in rows if r["kind"] == "baseline"
                and r["threads"] == (None if args.device == "cuda" else torch.get_num_threads()))

    def floor(**changes: Any) -> list[dict]:
        return [run_child({**floor_spec, **changes, **setting}) for setting in floors]

    res: dict[str, Any] = {"machine": machine_info(args.device), "args": vars(args), "n_train": n_train,
                           "n_valid": n_valid, "floor": [], "runs": {c: {key(r): [] for r in rows}
                                                                     for c in conditions},
                           "rows": rows, "conditions": conditions, "main": key(ours), "loop": key(loop),
                           "variants": {v: [] for v in args.variants}}
    partial = Path(args.json + ".partial")
    if args.go_on and partial.is_file():  # the repeats a killed run finished, then the rest
        res = json.loads(partial.read_text())
        res["continued_at_repeat"] = len(res["floor"]) + 1
        _say(f"going on from {partial}: {len(res['floor'])} repeat(s) done")
    started = time.perf_counter()
    for r in range(len(res["floor"]), args.repeats):
        for condition in conditions:
            todo = [row for row in rows if runs_in(condition, row, args)]
            names = [f"{row['kind']} {row['threads'] or 'default'}"
                     f"{' ' + row['matmul'] if row.get('matmul') else ''} ({row['policy']})" for row in todo]
            _say(f"repeat {r + 1}/{args.repeats}, {condition}: "
                 + ("floor, " if condition == "idle" else "") + ", ".join(names))
            with BusyProcess() if condition == "busy" else nullcontext():
                if condition == "idle":
                    res["floor"].append(floor())
                for row in todo:
                    spec = {**common, "kind": row["kind"], "n_train": n_train, "epochs": args.epochs,
                            "seed": r, "batch_size": 128, "threads": row["threads"],
                            "paired": not args.unpaired, "env": _policy_env(row["policy"]),
                            "matmul": row.get("matmul")}
                    res["runs"][condition][key(row)].append(run_child(spec))
        for v in args.variants:
            run = {**common, "n_train": n_train, "epochs": args.epochs, "seed": r, "batch_size": 128,
                   "threads": ours["threads"], "env": _policy_env(ours["policy"])}
            if v == "cudagraph":
                res["variants"][v].append(run_child({**run, "kind": "cudagraph"}))
            else:
                overrides = {"precision": "bf16"} if v == "bf16" else {"compile": True}
                res["variants"][v].append(run_child({**run, "kind": "aelab", "overrides": overrides}))
        partial.write_text(json.dumps(res, indent=1))  # survives a kill: --go-on starts from it
    res["aelab"], res["baseline"] = res["runs"]["idle"][res["main"]], res["runs"]["idle"][res["loop"]]
    if "bf16" in args.variants:
        res["bf16_floor"] = floor(precision="bf16")
    _say("scaling: training-set size, batch size")
    res["scaling_floor"] = res["floor"][0] if args.quick else floor(batches=[128] + batches)
    res["scaling"] = []
    for n, batch in [(n, 128) for n in sizes] + [(n_train, b) for b in batches]:
        _say(f"  {n} images, batch {batch}")
        res["scaling"].append({"n_train": n, "batch_size": batch, **run_child(
            {**common, "kind": "aelab", "n_train": n, "epochs": args.scaling_epochs, "seed": 0,
             "batch_size": batch, "threads": ours["threads"], "env": _policy_env(ours["policy"])})})
    res["seconds"] = time.perf_counter() - started
    return res


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _epoch_floor(floors: list[dict], key: str = "seconds", backend: str | None = None) -> float:
    return (combine_floor(floors, "train", 128, key, backend)
            + combine_floor(floors, "valid", key=key, backend=backend))


def _epoch_s(runs: list[dict], key: str = "seconds") -> float:
    """Median seconds per epoch over every epoch of every repeat."""
    return _median([e[key] for r in runs for e in r["epochs"] if key in e])


def summarize(res: dict) -> dict:
    """Medians over repeats and the ratios the issue asks for."""
    floors, ae, base = res["floor"], res["aelab"], res["baseline"]
    flops = floors[0][0]["flops"]
    s = {"floor_s": _median([_epoch_floor(f) for f in floors]),
         "floor_cpu_s": _median([_epoch_floor(f, "cpu_seconds") for f in floors]),
         "train_gflop": flops["train"] / 1e9, "valid_gflop": flops["valid"] / 1e9,
         "aelab_s": _epoch_s(ae),
         "aelab_with_io_cpu_s": _median([w for a in ae for w in a["with_io_cpu_seconds"]]),
         "aelab_io_s": _median([w for a in ae for w in a["io_seconds"]]),
         "baseline_s": _epoch_s(base), "baseline_cpu_s": _epoch_s(base, "cpu_seconds"),
         "aelab_mse": _median([a["valid_mse"] for a in ae]),
         "baseline_mse": _median([b["valid_mse"] for b in base]),
         "mse_differences": [a["valid_mse"] / b["valid_mse"] - 1 for a, b in zip(ae, base)],
         "aelab_rss_mb": _median([a["peak_rss_mb"] for a in ae]),
         "baseline_rss_mb": _median([b["peak_rss_mb"] for b in base]),
         "auto_chose": {c: [_setting(r) for r in res["runs"][c][res["main"]]]
                        for c in res["conditions"]},
         "auto_probe_s": _median([r["threads_info"].get("seconds", 0.0) for r in ae])}
    s["aelab_with_io_s"] = s["aelab_s"] + s["aelab_io_s"]
    s["floor_by_backend"] = {b: _median([_epoch_floor(f, backend=b) for f in floors])
                             for b in dict.fromkeys(r.get("backend", "torch") for r in floors[0][0]["rows"])}
    s["aelab_over_floor"] = s["aelab_s"] / s["floor_s"]
    s["aelab_over_baseline"] = s["aelab_s"] / s["baseline_s"]
    s["mse_difference"] = _median(s["mse_differences"])
    s["floor_by_setting"] = [
        {"threads": f["threads"], "policy": f["policy"],
         "seconds": _median([_epoch_floor([fs[i]]) for fs in floors])}
        for i, f in enumerate(floors[0])]
    s["rows"] = {c: {k: {"s": _epoch_s(runs), "cpu_s": _median(
        [w for r in runs for w in r.get("with_io_cpu_seconds", [])] or
        [e["cpu_seconds"] for r in runs for e in r["epochs"] if "cpu_seconds" in e]),
        "mse": _median([r["valid_mse"] for r in runs]),
        "chosen": [_setting(r) for r in runs]} for k, runs in res["runs"][c].items()}
        for c in res["conditions"]}
    idle = s["rows"]["idle"]
    loops = [v["s"] for k, v in idle.items() if k.startswith("baseline")]
    s["fastest_loop_s"] = min(loops)
    s["aelab_over_fastest_loop"] = s["aelab_s"] / s["fastest_loop_s"]
    if "busy" in s["rows"]:
        busy = s["rows"]["busy"]
        one = key({"kind": "aelab", "threads": 1, "policy": aelab_policy_of(res)})
        s["busy_auto_s"] = busy[res["main"]]["s"]
        s["busy_one_s"] = busy[one]["s"] if one in busy else float("nan")
        s["busy_auto_over_one"] = s["busy_auto_s"] / s["busy_one_s"]
        s["busy_loop_s"] = busy[res["loop"]]["s"]
    s["variants"] = {}
    for name, runs in res["variants"].items():
        s["variants"][name] = {
            "s": _epoch_s(runs),
            "later_epochs_s": _median([e["seconds"] for r in runs for e in r["epochs"][1:]]),
            "first_epoch_cold_s": runs[0]["epochs"][0]["seconds"],
            "first_epoch_warm_s": _median([r["epochs"][0]["seconds"] for r in runs[1:]]),
            "with_io_cpu_s": _median([w for r in runs for w in r.get("with_io_cpu_seconds", [])]),
            "mse": _median([r["valid_mse"] for r in runs]),
            "mse_differences": [r["valid_mse"] / b["valid_mse"] - 1 for r, b in zip(runs, base)],
            "rss_mb": _median([r["peak_rss_mb"] for r in runs])}
    if "bf16_floor" in res:
        s["variants"]["bf16"]["own_floor_s"] = _epoch_floor(res["bf16_floor"])
    return s


def aelab_policy_of(res: dict) -> str:
    return next(r["policy"] for r in res["rows"] if r["kind"] == "aelab")


def _f(x: float, digits: int = 2) -> str:
    return "-" if x != x else f"{x:.{digits}f}"  # NaN (not measured in --quick) as "-"


def _pcts(values: list[float]) -> str:
    return ", ".join(f"{100 * v:+.1f}%" for v in values)


def _label(row: dict, res: dict) -> str:
    policy = f"OMP_WAIT_POLICY {row['policy']}"
    if row["kind"] == "baseline":
        default = " (torch's default: the loop as users run it)" if key(row) == res["loop"] else ""
        count = (f"{row['threads']} thread{'s' * (row['threads'] != 1)}" if row["threads"]
                 else "default threads")
        return f"the tutorial's loop, {count}{default}, {policy}"
    if row["threads"] is None:
        return f"aelab, seed preset, {policy}"
    flag = f"`--threads {row['threads']}" + (f" --matmul {row['matmul']}`" if row.get("matmul") else "`")
    return f"aelab {flag}, {policy}" + (" (what `aelab train` does)" if key(row) == res["main"] else "")


def _setting(run: dict) -> str | None:
    """What an aelab run trained on: "2 onednn" (threads, matmul backend); the loop's count alone."""
    n, backend = run.get("threads_chosen"), run.get("matmul_chosen")
    return None if n is None else f"{n} {backend}" if backend else str(n)


def _chosen(values: list) -> str:
    return ", ".join(str(v) for v in values) if any(v is not None for v in values) else ""


def markdown(res: dict, s: dict) -> str:
    m, n, a = res["machine"], res["n_train"], res["args"]
    floor, floor_cpu = s["floor_s"], s["floor_cpu_s"]
    busy = "busy" in s["rows"]
    floor_line = "; ".join(f"{f['threads']} thread{'s' * (f['threads'] > 1)}"
                           f"{'' if f['threads'] == 1 else ' ' + f['policy']} {f['seconds']:.2f} s"
                           for f in s["floor_by_setting"])
    lines = [f"{n:,} training and {res['n_valid']:,} validation images ({a['data']}), device {a['device']}; "
             f"{a['repeats']} repeats of {a['epochs']} epochs, medians; an epoch is train + validation"
             + ("; 'busy': beside one process running a one-thread matmul loop" if busy else "") + ".", "",
             "| | s / epoch | x floor | CPU s / epoch | valid MSE | peak RSS MB | threads, matmul used"
             + (" | busy: s / epoch | busy: threads, matmul used |" if busy else " |"),
             "|---|---:|---:|---:|---:|---:|---:" + ("|---:|---:|" if busy else "|"),
             f"| compute floor: {s['train_gflop']:.0f} + {s['valid_gflop']:.0f} GFLOP, each GEMM at its "
             f"fastest measured setting | {_f(floor)} | 1.00 | {_f(floor_cpu)} | | | |"
             + (" | |" if busy else "")]
    for row in res["rows"]:
        k = key(row)
        idle = s["rows"]["idle"][k]
        rss = _median([r["peak_rss_mb"] for r in res["runs"]["idle"][k]])
        cells = [_label(row, res), _f(idle["s"]), _f(idle["s"] / floor), _f(idle["cpu_s"]),
                 _f(idle["mse"], 5), _f(rss, 0), _chosen(idle["chosen"]) or str(row["threads"] or "")]
        if busy:
            b = s["rows"]["busy"][k]
            cells += [_f(b["s"]), _chosen(b["chosen"]) or str(row["threads"] or "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| aelab `auto` with its per-epoch figure and checkpoint | {_f(s['aelab_with_io_s'])} "
                 f"| {_f(s['aelab_with_io_s'] / floor)} | {_f(s['aelab_with_io_cpu_s'])} | | | |"
                 + (" | |" if busy else ""))
    for name, v in s["variants"].items():
        label = {"bf16": "aelab --precision bf16", "compile": "aelab --compile",
                 "cudagraph": "the whole step as one CUDA graph (benchmarks/cuda_graph_step.py)"}[name]
        own = f"; its bf16 GEMM floor is {v['own_floor_s']:.2f} s" if "own_floor_s" in v else ""
        lines.append(f"| {label} (first epoch {_f(v['first_epoch_cold_s'], 1)} s cold, "
                     f"{_f(v['first_epoch_warm_s'], 1)} s warm, later {_f(v['later_epochs_s'])} s; MSE vs "
                     f"the loop {_pcts(v['mse_differences'])}{own}) | {_f(v['s'])} | {_f(v['s'] / floor)} "
                     f"| {_f(v['with_io_cpu_s'])} | {v['mse']:.5f} | {v['rss_mb']:.0f} | |"
                     + (" | |" if busy else ""))
    lines += ["", f"aelab `auto` / the loop = **{_f(s['aelab_over_baseline'])}** (target <= 0.5; / the "
              f"loop's fastest setting {_f(s['aelab_over_fastest_loop'])}); aelab `auto` / floor = "
              f"**{_f(s['aelab_over_floor'])}** (target <= 1.8); valid MSE aelab vs the loop, paired by "
              f"seed: "
              f"median **{100 * s['mse_difference']:+.1f}%** (per repeat {_pcts(s['mse_differences'])}; "
              f"target within 3%)"
              + (f"; beside a busy process `auto` / one thread = **{_f(s['busy_auto_over_one'])}** "
                 f"(target <= 1.10)" if busy else "")
              + f". `auto` chose {'; '.join(f'{c}: {_chosen(v)}' for c, v in s['auto_chose'].items())} "
              f"threads, measuring for {_f(s['auto_probe_s'])} s at the start of each run (not in the epoch "
              f"times). Figure + checkpoint {_f(s['aelab_io_s'])} s per epoch. Floor by thread setting: "
              f"{floor_line}; by GEMM backend (each at its fastest thread setting): "
              + ", ".join(f"{b} {v:.2f} s" for b, v in s["floor_by_backend"].items()) + ".", ""]
    if "cuda_peak_mb" in res["aelab"][0]:
        lines += [f"GPU memory peak (torch.cuda.max_memory_allocated): aelab "
                  f"{_median([r['cuda_peak_mb'] for r in res['aelab']]):.0f} MB, baseline "
                  f"{_median([r['cuda_peak_mb'] for r in res['baseline']]):.0f} MB.", ""]
    lines += scaling_table(res, s)
    dataset_mb = res["aelab"][0]["dataset_mb"]
    params = sum(p.numel() for p in create_model(resolve_config("seed").model).parameters())
    load = ", ".join(f"{x:.1f}" for x in m["load_average"] or [])
    lines += ["", f"uint8 dataset {dataset_mb:.0f} MB; model {params:,} parameters = "
              f"{4 * params / MB:.1f} MB, {16 * params / MB:.1f} MB with gradients and Adam's two moments. "
              f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['cpu_capability']}), "
              f"load average at start {load}."]
    return "\n".join(lines)


def scaling_table(res: dict, s: dict) -> list[str]:
    n = res["n_train"]
    main = {"n_train": n, "batch_size": 128, "epochs": [{"seconds": s["aelab_s"]}],
            "threads_chosen": _chosen(s["auto_chose"]["idle"]),
            "valid_seconds": _median([a["valid_seconds"] for a in res["aelab"]]),
            "with_io_cpu_seconds": [s["aelab_with_io_cpu_s"]], "peak_rss_mb": s["aelab_rss_mb"],
            "train_adds_mb": _median([a["train_adds_mb"] for a in res["aelab"]])}
    rows = sorted(res["scaling"] + [main],
                  key=lambda r: (r["batch_size"] != 128, r["n_train"], r["batch_size"]))
    lines = [f"Scaling (aelab `auto`, seed preset; the last of {res['args']['scaling_epochs']} epochs, the "
             f"{n:,} x 128 row is the main result; validation is a fixed {res['n_valid']:,}-image pass, "
             f"timed apart; train floor = the GEMM floor of the training part):", "",
             "| train images | batch | threads | s / epoch | CPU s / epoch | of which valid s "
             "| train us / image | train floor s | train x floor | peak RSS MB | training adds MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        epoch = r["epochs"][-1]["seconds"]
        cpu = (r["with_io_cpu_seconds"] or [float("nan")])[-1]
        train_s = epoch - r["valid_seconds"]
        train_floor = combine_floor(res["scaling_floor"], "train", r["batch_size"]) * r["n_train"] / n
        used = r["threads_chosen"] if isinstance(r.get("threads_chosen"), str) else _setting(r) or ""
        lines.append(f"| {r['n_train']:,} | {r['batch_size']} | {used} "
                     f"| {_f(epoch)} | {_f(cpu)} "
                     f"| {_f(r['valid_seconds'])} | {_f(1e6 * train_s / r['n_train'], 1)} "
                     f"| {_f(train_floor)} | {_f(train_s / train_floor)} "
                     f"| {r['peak_rss_mb']:.0f} | {r['train_adds_mb']:.0f} |")
    return lines


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "aelab": aelab.__version__, "cpu": platform.processor(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").open()
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2, help="epochs per measurement (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the main comparison (default 3)")
    p.add_argument("--scaling-epochs", type=int, default=2, help="epochs per scaling point (default 2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=_counts, default=None,
                   help="comma list of thread counts on the axis (default 1, 2, 4, ... and all cores)")
    p.add_argument("--no-busy", action="store_true", help="skip the runs beside a busy process")
    p.add_argument("--go-on", action="store_true",
                   help="start from the repeats JSON.partial holds (a killed run's), same arguments")
    p.add_argument("--loop-policy", choices=["aelab", "user"], default="aelab",
                   help="the OpenMP wait policy the tutorial's loop runs under: aelab's (default: the "
                        "comparison is of the training code), or the user's environment as a plain "
                        "python script gets it (libgomp's default unless OMP_WAIT_POLICY is set)")
    p.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist", "mnist", "random"],
                   help="fashion-mnist (apt-get install dataset-fashion-mnist, or downloaded), "
                        "mnist, or random images of the same shape")
    p.add_argument("--variants", default="", help="comma list of extra runs: bf16, compile (aelab's "
                   "flags), cudagraph (the whole step as one CUDA graph; with --device cuda, where it is "
                   "always run)")
    p.add_argument("--unpaired", action="store_true",
                   help="the baseline shuffles with DataLoader(shuffle=True), not in aelab's batch order")
    p.add_argument("--quick", action="store_true", help="smoke test: 2,048 images, 1 epoch, 1 repeat")
    p.add_argument("--json", default="train_speed.json", help="where to write all results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in VARIANTS:
            p.error(f"--variants {v!r}: choose from {', '.join(VARIANTS)}")
    if args.device == "cuda" and "cudagraph" not in args.variants:
        args.variants.append("cudagraph")
    if args.device != "cuda" and "cudagraph" in args.variants:
        _say("--variants cudagraph: needs --device cuda; skipped")
        args.variants.remove("cudagraph")
    if args.quick:
        args.epochs, args.repeats, args.scaling_epochs = 1, 1, 1
    if args.device == "cuda" and not args.child and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    return args


VARIANTS = ("bf16", "compile", "cudagraph")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of thread counts") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts start at 1")
    return sorted(set(counts))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # so --compile's first repeat starts cold
        res = benchmark(args)
    res["summary"] = summarize(res)
    Path(args.json).write_text(json.dumps(res, indent=1))
    print(markdown(res, res["summary"]))
    _say(f"wrote {args.json} ({res['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
