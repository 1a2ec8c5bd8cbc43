"""How fast aelab trains, against the machine's compute floor and the tutorial's loop, in one run.

    python benchmarks/train_speed.py                     # CPU, Fashion-MNIST: about 10 minutes on 2 cores
    python benchmarks/train_speed.py --quick             # smoke test on a slice, under a minute
    python benchmarks/train_speed.py --device cuda       # the same on a GPU (data resident there)
    python benchmarks/train_speed.py --variants bf16,compile   # also time --precision bf16, --compile

It measures, on the same 60,000 training images (Fashion-MNIST, or `--data random` of that shape):

* the compute floor: the model's GEMM FLOPs per epoch, counted from its Linear layers' shapes,
  divided by the GEMM throughput measured here with `torch.mm` at exactly those shapes and layouts,
  for training and for the validation pass (an epoch below is always train + validation);
* aelab's seconds per epoch (the `seed` preset through `aelab.training.train`), and apart from
  them the figure and checkpoint it writes after every epoch;
* the baseline: the tutorial's loop as a user writes it (a `Dataset` returning one float tensor per
  image, a `DataLoader` of batch 128 that shuffles, `loss.item()` every step, default Adam);
* the validation MSE of both after the same epochs, and each one's peak memory (RSS);
* scaling: aelab's seconds per epoch against training-set size and batch size.

Every measurement runs in a fresh subprocess (this file with `--child`), so peak RSS and thread
pools do not leak between them; all see the same environment (including the OMP_WAIT_POLICY that
the `aelab` command sets, PASSIVE unless already set, which this file sets the same way) and
thread count. Repeats interleave floor, aelab and baseline, so a busy
machine slows each alike; tables show medians over repeats. Wall-clock seconds are the result;
CPU seconds (all threads of the process) are shown beside them because on a shared machine they
move far less with other people's load. Results go to `--json`, a markdown table to stdout.
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
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the aelab CLI does, before torch loads

import torch  # noqa: E402

import aelab  # noqa: E402
from aelab.data import ImageData, load_dataset  # noqa: E402
from aelab.engine import cpu_threads, evaluate_loss  # noqa: E402
from aelab.models import create_model  # noqa: E402
from aelab.presets import resolve_config  # noqa: E402
from aelab.training import train  # noqa: E402

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


def time_mm(a: torch.Tensor, b: torch.Tensor, block_seconds: float, blocks: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of one `torch.mm(a, b)`, timed in blocks of calls."""
    for _ in range(3):
        torch.mm(a, b)
    clock, calls = Clock(a.device), 0
    while clock.read()[0] < block_seconds / 4 or calls < 3:
        torch.mm(a, b)
        calls += 1
    per_block = max(3, 4 * calls)
    walls, cpus = [], []
    for _ in range(blocks):
        clock = Clock(a.device)
        for _ in range(per_block):
            torch.mm(a, b)
        wall, cpu = clock.read()
        walls.append(wall / per_block)
        cpus.append(cpu / per_block)
    return statistics.median(walls), statistics.median(cpus)


def measure_floor(shapes: list[tuple[int, int]], batches: list[int], n_train: int, n_valid: int,
                  device: torch.device, dtype: torch.dtype, block_seconds: float, blocks: int) -> list[dict]:
    """One row per GEMM of an epoch: its shape, how often an epoch calls it, wall and CPU seconds.

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
            ops = {"forward": (x, w.t())}
            if part == "train":
                ops["grad_weight"] = (g.t(), x)
                if k > 0:
                    ops["grad_input"] = (g, w)
            for op, (a, b) in ops.items():
                wall, cpu = time_mm(a, b, block_seconds, blocks)
                rows.append({"part": part, "batch": batch, "layer": k, "op": op, "in": i, "out": o,
                             "calls": n / batch, "seconds": wall, "cpu_seconds": cpu,
                             "gflops": 2 * batch * i * o / wall / 1e9})
    return rows


def combine_floor(floors: list[dict], part: str, batch: int = 128, key: str = "seconds") -> float:
    """Seconds per epoch of `part` when every GEMM runs as fast as its best measured setting."""
    best: dict[tuple, float] = {}
    for f in floors:
        for r in f["rows"]:
            if r["part"] == part and (part == "valid" or r["batch"] == batch):
                k = (r["batch"], r["layer"], r["op"])
                best[k] = min(best.get(k, float("inf")), r[key] * r["calls"])
    return sum(best.values())


# --- the tutorial's loop, as a user writes it ----------------------------------------------------

class TutorialImages(torch.utils.data.Dataset):
    """One float image (1, 28, 28) in [0, 1] per item, as `transforms.ToTensor()` gives."""

    def __init__(self, images_u8: torch.Tensor) -> None:
        self.images = images_u8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].unsqueeze(0).float() / 255.0


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
    torch.manual_seed(seed)
    cfg = resolve_config("seed", {"seed": seed})
    model = create_model(cfg.model).to(device)  # the tutorial's Net, same initial weights as aelab's
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    criterion = torch.nn.MSELoss()
    train_images = TutorialImages(data.train_images)
    if paired:
        train_loader = torch.utils.data.DataLoader(train_images, batch_size=BASELINE_BATCH,
                                                   sampler=SeededShuffle(len(train_images), seed))
    else:
        train_loader = torch.utils.data.DataLoader(train_images, batch_size=BASELINE_BATCH, shuffle=True)
    valid_loader = torch.utils.data.DataLoader(TutorialImages(data.test_images),
                                               batch_size=BASELINE_BATCH, shuffle=False)
    records = []
    for epoch in range(1, epochs + 1):
        clock = Clock(device)
        model.train()
        train_loss = 0.0
        for x in train_loader:
            x = x.to(device).view(-1, 784)
            optimizer.zero_grad()
            loss = criterion(model(x), x)
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(x)
        model.eval()
        valid_loss = 0.0
        with torch.no_grad():
            for x in valid_loader:
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
    records = [{k: m[k] for k in ("epoch", "seconds", "train_mse", "valid_mse")} for m in run.metrics]
    with_io = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
    with_io_cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    valid_u8, model = data.test_images.to(device), run.model.to(device)
    valid = []
    for _ in range(3):
        clock = Clock(device)
        evaluate_loss(model, valid_u8)
        valid.append(clock.read()[0])
    return {"epochs": records, "valid_mse": records[-1]["valid_mse"],
            "with_io_seconds": with_io, "with_io_cpu_seconds": with_io_cpu,
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
    out: dict[str, Any] = {"kind": spec["kind"], "env": spec.get("env", {})}
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
    # the threads each one trains on: aelab's engine picks its own, the tutorial keeps torch's
    out["threads"] = cpu_threads() if spec["kind"] == "aelab" else torch.get_num_threads()
    data = load_benchmark_data(spec["data"], spec["n_train"], spec["n_valid"])
    out["load_peak_mb"] = _proc_status_mb("VmHWM") or 0.0
    out["rss_before_mb"] = _proc_status_mb("VmRSS") or 0.0
    out["peak_reset"] = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if spec["kind"] == "baseline":
        out.update(baseline_training(data, spec["epochs"], spec["seed"], device, spec["paired"]))
    else:
        out.update(aelab_training(data, spec["epochs"], spec["seed"], device, spec["batch_size"],
                                  spec.get("overrides", {})))
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


def run_child(spec: dict) -> dict:
    """`spec` measured in a fresh Python process; exits with its stderr when it fails."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, env={**os.environ, **spec.get("env", {})})
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {spec['kind']} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "child_seconds": time.perf_counter() - started}


# --- the whole benchmark -------------------------------------------------------------------------

def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def floor_settings(args: argparse.Namespace) -> list[dict]:
    """Thread settings the floor tries; each GEMM counts at its fastest, so no setting aelab or
    the baseline could choose beats the floor: one thread, all cores with the OpenMP wait policy
    of the environment, and all cores spinning (fastest on an idle machine, slowest on a busy one).
    `--quick` tries torch's default only."""
    if args.device == "cuda" or args.quick:
        return [{}]
    cores = args.threads or machine_info("cpu")["cores"]
    settings = [{"threads": 1}] if args.threads in (None, 1) else []
    if cores > 1:
        settings += [{"threads": cores}, {"threads": cores, "env": {"OMP_WAIT_POLICY": "ACTIVE"}}]
    return settings


def benchmark(args: argparse.Namespace) -> dict:
    n_train, n_valid = (2048, 500) if args.quick else (60000, 10000)
    sizes = [n_train // 2] if args.quick else [n_train // 8, n_train // 4, n_train // 2]
    batches = [64] if args.quick else [64, 256, 512, 1024]
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    common = {"device": args.device, "data": args.data, "n_valid": n_valid, "env": env}
    floor_spec = {"device": args.device, "kind": "floor", "n_train": n_train, "n_valid": n_valid,
                  "batches": [128] + batches if args.quick else [128],
                  "block_seconds": 0.01 if args.quick else 0.02, "blocks": 3 if args.quick else 5}
    settings = floor_settings(args)

    def floor(**changes: Any) -> list[dict]:
        return [run_child({**floor_spec, **changes, **setting}) for setting in settings]

    res: dict[str, Any] = {"machine": machine_info(args.device), "args": vars(args), "n_train": n_train,
                           "n_valid": n_valid, "floor": [], "aelab": [], "baseline": [],
                           "variants": {v: [] for v in args.variants}}
    started = time.perf_counter()
    for r in range(args.repeats):
        _say(f"repeat {r + 1}/{args.repeats}: floor, aelab, baseline {' '.join(args.variants)}")
        res["floor"].append(floor())
        run = {**common, "n_train": n_train, "epochs": args.epochs, "seed": r, "batch_size": 128}
        res["aelab"].append(run_child({**run, "kind": "aelab"}))
        res["baseline"].append(run_child({**run, "kind": "baseline", "paired": not args.unpaired}))
        for v in args.variants:
            overrides = {"precision": "bf16"} if v == "bf16" else {"compile": True}
            res["variants"][v].append(run_child({**run, "kind": "aelab", "overrides": overrides}))
    if "bf16" in args.variants:
        res["bf16_floor"] = floor(precision="bf16")
    _say("scaling: training-set size, batch size")
    res["scaling_floor"] = res["floor"][0] if args.quick else floor(batches=[128] + batches)
    res["scaling"] = []
    for n, batch in [(n, 128) for n in sizes] + [(n_train, b) for b in batches]:
        _say(f"  {n} images, batch {batch}")
        res["scaling"].append({"n_train": n, "batch_size": batch, **run_child(
            {**common, "kind": "aelab", "n_train": n, "epochs": args.scaling_epochs, "seed": 0,
             "batch_size": batch})})
    res["seconds"] = time.perf_counter() - started
    return res


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _epoch_floor(floors: list[dict], key: str = "seconds") -> float:
    return combine_floor(floors, "train", 128, key) + combine_floor(floors, "valid", key=key)


def summarize(res: dict) -> dict:
    """Medians over repeats and the ratios the issue asks for."""
    floors, ae, base = res["floor"], res["aelab"], res["baseline"]
    flops = floors[0][0]["flops"]
    s = {"floor_s": _median([_epoch_floor(f) for f in floors]),
         "floor_cpu_s": _median([_epoch_floor(f, "cpu_seconds") for f in floors]),
         "train_gflop": flops["train"] / 1e9, "valid_gflop": flops["valid"] / 1e9,
         "aelab_s": _median([e["seconds"] for a in ae for e in a["epochs"]]),
         "aelab_with_io_cpu_s": _median([w for a in ae for w in a["with_io_cpu_seconds"]]),
         "aelab_io_s": _median([w for a in ae for w in a["io_seconds"]]),
         "baseline_s": _median([e["seconds"] for b in base for e in b["epochs"]]),
         "baseline_cpu_s": _median([e["cpu_seconds"] for b in base for e in b["epochs"]]),
         "aelab_mse": _median([a["valid_mse"] for a in ae]),
         "baseline_mse": _median([b["valid_mse"] for b in base]),
         "mse_differences": [a["valid_mse"] / b["valid_mse"] - 1 for a, b in zip(ae, base)],
         "aelab_rss_mb": _median([a["peak_rss_mb"] for a in ae]),
         "baseline_rss_mb": _median([b["peak_rss_mb"] for b in base])}
    s["aelab_with_io_s"] = s["aelab_s"] + s["aelab_io_s"]
    s["aelab_over_floor"] = s["aelab_s"] / s["floor_s"]
    s["aelab_over_baseline"] = s["aelab_s"] / s["baseline_s"]
    s["mse_difference"] = _median(s["mse_differences"])
    s["floor_by_setting"] = [
        {"threads": f["threads"], "env": f["env"],
         "seconds": _median([_epoch_floor([fs[i]]) for fs in floors])}
        for i, f in enumerate(floors[0])]
    s["variants"] = {}
    for name, runs in res["variants"].items():
        s["variants"][name] = {
            "s": _median([e["seconds"] for r in runs for e in r["epochs"]]),
            "later_epochs_s": _median([e["seconds"] for r in runs for e in r["epochs"][1:]]),
            "first_epoch_cold_s": runs[0]["epochs"][0]["seconds"],
            "first_epoch_warm_s": _median([r["epochs"][0]["seconds"] for r in runs[1:]]),
            "with_io_cpu_s": _median([w for r in runs for w in r["with_io_cpu_seconds"]]),
            "mse": _median([r["valid_mse"] for r in runs]),
            "mse_differences": [r["valid_mse"] / b["valid_mse"] - 1 for r, b in zip(runs, base)],
            "rss_mb": _median([r["peak_rss_mb"] for r in runs])}
    if "bf16_floor" in res:
        s["variants"]["bf16"]["own_floor_s"] = _epoch_floor(res["bf16_floor"])
    return s


def _f(x: float, digits: int = 2) -> str:
    return "-" if x != x else f"{x:.{digits}f}"  # NaN (not measured in --quick) as "-"


def _pcts(values: list[float]) -> str:
    return ", ".join(f"{100 * v:+.1f}%" for v in values)


def markdown(res: dict, s: dict) -> str:
    m, n, a = res["machine"], res["n_train"], res["args"]
    floor, floor_cpu = s["floor_s"], s["floor_cpu_s"]
    settings = "; ".join(f"{f['threads']} thread{'s' * (f['threads'] > 1)}{' spinning' if f['env'] else ''} "
                         f"{f['seconds']:.2f} s" for f in s["floor_by_setting"])
    lines = [f"{n:,} training and {res['n_valid']:,} validation images ({a['data']}), device {a['device']}; "
             f"aelab trains on {res['aelab'][0]['threads']} thread(s), the baseline on "
             f"{res['baseline'][0]['threads']}; {a['repeats']} repeats of {a['epochs']} epochs, medians; "
             f"an epoch is train + validation.", "",
             "| | s / epoch | x floor | CPU s / epoch | x floor CPU | valid MSE | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| compute floor: {s['train_gflop']:.0f} + {s['valid_gflop']:.0f} GFLOP, each GEMM at its "
             f"fastest measured speed | {_f(floor)} | 1.00 | {_f(floor_cpu)} | 1.00 | | |",
             f"| aelab, seed preset | {_f(s['aelab_s'])} | {_f(s['aelab_over_floor'])} | | "
             f"| {s['aelab_mse']:.5f} | {s['aelab_rss_mb']:.0f} |",
             f"| aelab with its per-epoch figure and checkpoint | {_f(s['aelab_with_io_s'])} "
             f"| {_f(s['aelab_with_io_s'] / floor)} | {_f(s['aelab_with_io_cpu_s'])} "
             f"| {_f(s['aelab_with_io_cpu_s'] / floor_cpu)} | | |",
             f"| baseline: the tutorial's loop | {_f(s['baseline_s'])} | {_f(s['baseline_s'] / floor)} "
             f"| {_f(s['baseline_cpu_s'])} | {_f(s['baseline_cpu_s'] / floor_cpu)} | {s['baseline_mse']:.5f} "
             f"| {s['baseline_rss_mb']:.0f} |"]
    for name, v in s["variants"].items():
        label = "--precision bf16" if name == "bf16" else "--compile"
        own = f"; its bf16 GEMM floor is {v['own_floor_s']:.2f} s" if "own_floor_s" in v else ""
        lines.append(f"| aelab {label} (first epoch {_f(v['first_epoch_cold_s'], 1)} s cold, "
                     f"{_f(v['first_epoch_warm_s'], 1)} s warm, later {_f(v['later_epochs_s'])} s; MSE vs "
                     f"baseline {_pcts(v['mse_differences'])}{own}) | {_f(v['s'])} | {_f(v['s'] / floor)} "
                     f"| {_f(v['with_io_cpu_s'])} | {_f(v['with_io_cpu_s'] / floor_cpu)} | {v['mse']:.5f} "
                     f"| {v['rss_mb']:.0f} |")
    lines += ["", f"aelab / floor = **{_f(s['aelab_over_floor'])}** (target <= 1.5); "
              f"aelab / baseline = **{_f(s['aelab_over_baseline'])}** (target <= 0.55); "
              f"valid MSE aelab vs baseline, paired by seed: median **{100 * s['mse_difference']:+.1f}%** "
              f"(per repeat {_pcts(s['mse_differences'])}; target within 3%); figure + checkpoint "
              f"{_f(s['aelab_io_s'])} s per epoch. Floor by thread setting: {settings}.", ""]
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
              f"OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}, load average at start {load}."]
    return "\n".join(lines)


def scaling_table(res: dict, s: dict) -> list[str]:
    n = res["n_train"]
    main = {"n_train": n, "batch_size": 128, "epochs": [{"seconds": s["aelab_s"]}],
            "valid_seconds": _median([a["valid_seconds"] for a in res["aelab"]]),
            "with_io_cpu_seconds": [s["aelab_with_io_cpu_s"]], "peak_rss_mb": s["aelab_rss_mb"],
            "train_adds_mb": _median([a["train_adds_mb"] for a in res["aelab"]])}
    rows = sorted(res["scaling"] + [main],
                  key=lambda r: (r["batch_size"] != 128, r["n_train"], r["batch_size"]))
    lines = [f"Scaling (aelab, seed preset; the last of {res['args']['scaling_epochs']} epochs, the "
             f"{n:,} x 128 row is the main result; validation is a fixed {res['n_valid']:,}-image pass, "
             f"timed apart; train floor = the GEMM floor of the training part):", "",
             "| train images | batch | s / epoch | CPU s / epoch | of which valid s | train us / image "
             "| train floor s | train x floor | peak RSS MB | training adds MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        epoch = r["epochs"][-1]["seconds"]
        cpu = (r["with_io_cpu_seconds"] or [float("nan")])[-1]
        train_s = epoch - r["valid_seconds"]
        train_floor = combine_floor(res["scaling_floor"], "train", r["batch_size"]) * r["n_train"] / n
        lines.append(f"| {r['n_train']:,} | {r['batch_size']} | {_f(epoch)} | {_f(cpu)} "
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
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist", "mnist", "random"],
                   help="fashion-mnist (apt-get install dataset-fashion-mnist, or downloaded), "
                        "mnist, or random images of the same shape")
    p.add_argument("--variants", default="", help="comma list of extra aelab runs: bf16, compile")
    p.add_argument("--unpaired", action="store_true",
                   help="the baseline shuffles with DataLoader(shuffle=True), not in aelab's batch order")
    p.add_argument("--quick", action="store_true", help="smoke test: 2,048 images, 1 epoch, 1 repeat")
    p.add_argument("--json", default="train_speed.json", help="where to write all results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in ("bf16", "compile"):
            p.error(f"--variants {v!r}: choose from bf16, compile")
    if args.quick:
        args.epochs, args.repeats, args.scaling_epochs = 1, 1, 1
    if args.device == "cuda" and not args.child and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    return args


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
