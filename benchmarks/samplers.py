"""Every sampler of two trained runs, scored as `aelab evaluate` scores them, with its fit and sample time.

    aelab train --preset seed --data-dir DATA --out runs/seed          # the tutorial's AE, ~30 s
    aelab train --preset vae --data-dir DATA --out runs/vae --quiet    # the VAE, a few minutes
    python benchmarks/samplers.py runs/seed runs/vae --json samplers.json   # ~30 min on 2 busy cores

For each run (in a copy of its folder without fitted samplers, so every sampler is fitted here and
the run is left alone) it encodes the training images once, then for each row decodes 5,000
images and scores them against the validation images with `aelab.metrics.SampleScorer`: the FID
on the digit classifier's features, improved precision and recall (k = 3, same features), the
share of confident digits and the median distance from each image to its nearest training image.
The ceilings come first: decoded training codes (what the decoder makes of the codes it was trained
on) and decoded validation codes (of digits it never saw; their NN distance is the yardstick for
"no copying"). Sampler rows give the seconds to fit (once per run) and to draw 5,000 codes.

It then trains the `seed` preset for its 20 epochs on the same data in the same process and
reports the recommended sampler's fit + sample time as a ratio to that training time, measured on
the same machine at nearly the same time (other people's load moves both). Prints markdown tables;
`--json` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the `aelab` command sets it, before torch loads

import torch  # noqa: E402

from aelab.classifier import load_or_train_classifier  # noqa: E402
from aelab.data.images import to_float_images  # noqa: E402
from aelab.presets import resolve_config  # noqa: E402
from aelab.run import load_run  # noqa: E402
from aelab.samplers.fitting import (  # noqa: E402
    NEEDS_FIT,
    RECOMMENDED,
    applicable_samplers,
    fitted_sampler,
    models_preactivation,
    run_data,
)
from aelab.scoring import SampleScorer  # noqa: E402
from aelab.training import train  # noqa: E402

COLUMNS = ["FID", "precision", "recall", "confident > 0.9", "NN distance to train (median)", "fit s",
           "sample s"]


EXTRA = ["gmm@n_components=2000"]  # besides every sampler's defaults


def parse_spec(spec: str) -> tuple[str, dict]:
    """'gmm@n_components=2000@reg_covar=0.03' -> ('gmm', {'n_components': 2000, 'reg_covar': 0.03})."""
    name, *pairs = spec.split("@")
    return name, {k: json.loads(v) for k, v in (pair.split("=", 1) for pair in pairs)}


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _seconds() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def bench_run(run_dir: str, n: int, seed: int, samplers: list[str] | None, tmp: Path,
              save=lambda result: None, done: dict | None = None) -> dict:
    copy = tmp / Path(run_dir).name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("samplers", "samples", "explain"))
    run = load_run(copy)
    data = run_data(run)
    classifier, _ = load_or_train_classifier(data)
    valid = to_float_images(data.test_images).reshape(-1, 28, 28)
    scorer = SampleScorer(classifier, valid, data.train_images)
    pre = models_preactivation(run)
    codes = run.encode(data.train_images, preactivation=pre)
    pick = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[:n]
    held_out = torch.randperm(len(valid), generator=torch.Generator().manual_seed(seed + 1))[:n]
    rows: dict = dict(done or {})  # rows of an earlier, interrupted run (--resume)
    result = {"run": run_dir, "kind": run.config.model.kind, "n": n, "rows": rows}
    if "decoded validation codes" not in rows:
        _log(f"{run.path.name}: decoded training codes, decoded validation codes")
        train_codes = codes[pick].relu() if pre else codes[pick]
        rows["decoded training codes (ceiling)"] = scorer.score(run.decode(train_codes))
        rows["decoded validation codes"] = scorer.score(run.reconstruct(data.test_images[held_out]))
    for spec in samplers or applicable_samplers(run, every=True) + EXTRA:
        name, kwargs = parse_spec(spec)
        label = f"`{name}`" + (f" ({', '.join(spec.split('@')[1:])})" if kwargs else "")
        if label in rows:
            continue
        _log(f"{run.path.name}: sampler {spec}")
        wall, cpu = _seconds()
        sampler = fitted_sampler(run, name, data, codes=codes.numpy(), **kwargs)
        fit = [a - b for a, b in zip(_seconds(), (wall, cpu))]
        wall, cpu = _seconds()
        drawn = torch.from_numpy(sampler.sample(n, seed))
        sample = [a - b for a, b in zip(_seconds(), (wall, cpu))]
        images = run.decode(drawn.relu() if pre and name in NEEDS_FIT else drawn)  # as sample_codes
        row = scorer.score(images)
        row.update(fit_seconds=fit[0], fit_cpu_seconds=fit[1], sample_seconds=sample[0],
                   sample_cpu_seconds=sample[1], config=sampler.get_config())
        if hasattr(sampler, "history_"):
            row.update(epochs=len(sampler.history_), best_epoch=sampler.best_epoch_)
        rows[label] = row
        save(result)  # every row as soon as it is measured
        _log(f"  FID {row['fid']:.2f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
             f"fit {fit[0]:.1f} s  sample {sample[0]:.1f} s")
    return result


def seed_training_seconds(data_dir: str, tmp: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `aelab train --preset seed` (20 epochs) on this machine, now."""
    cfg = resolve_config("seed", {"data_dir": data_dir})
    wall, cpu = _seconds()
    train(cfg, tmp / "seed-timing", quiet=True, log=lambda line: None)
    return time.perf_counter() - wall, time.process_time() - cpu


def table(result: dict) -> str:
    lines = [f"| {result['kind']} run, n = {result['n']} | " + " | ".join(COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for name, r in result["rows"].items():
        timing = (f"{r['fit_seconds']:.1f} | {r['sample_seconds']:.1f}" if "fit_seconds" in r else " | ")
        lines.append(f"| {name} | {r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
                     f"| {r['confident_share']:.3f} | {r['nn_train_distance_median']:.2f} | {timing} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="trained run folders (e.g. a seed run and a vae run)")
    p.add_argument("--n", type=int, default=5000, help="images per row (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samplers", help="comma-separated, each NAME or NAME@key=value@... (default: every "
                   f"sampler that applies to the run, and {', '.join(EXTRA)})")
    p.add_argument("--no-training", action="store_true", help="skip timing the seed preset's training")
    p.add_argument("--json", help="write every number here (after every row)")
    p.add_argument("--resume", action="store_true", help="keep the rows already in --json, measure the rest")
    args = p.parse_args(argv)
    samplers = args.samplers.split(",") if args.samplers else None
    out: dict = {"n": args.n, "recommended": RECOMMENDED, "torch_threads": torch.get_num_threads(),
                 "load_average_at_start": os.getloadavg(), "runs": []}
    def save(partial=None):
        if args.json:
            runs = out["runs"] + ([partial] if partial else [])
            Path(args.json).write_text(json.dumps({**out, "runs": runs}, indent=1, default=str))

    earlier = {}
    if args.resume and args.json and Path(args.json).is_file():
        earlier = {r["run"]: r["rows"] for r in json.loads(Path(args.json).read_text())["runs"]}
    with tempfile.TemporaryDirectory() as tmp:
        for run_dir in args.runs:
            result = bench_run(run_dir, args.n, args.seed, samplers, Path(tmp), save, earlier.get(run_dir))
            out["runs"].append(result)
            print(table(result) + "\n", flush=True)
        if not args.no_training:
            data_dir = load_run(args.runs[0]).config.data.data_dir
            _log("timing the seed preset's 20-epoch training on the same machine")
            wall, cpu = seed_training_seconds(data_dir, Path(tmp))
            out["seed_training_seconds"], out["seed_training_cpu_seconds"] = wall, cpu
            for result in out["runs"]:
                row = result["rows"].get(f"`{RECOMMENDED}`")
                if row:
                    took = row["fit_seconds"] + row["sample_seconds"]
                    took_cpu = row["fit_cpu_seconds"] + row["sample_cpu_seconds"]
                    print(f"{result['kind']} run: recommended `{RECOMMENDED}` fit + sample {took:.1f} s "
                          f"against the seed preset's 20-epoch training {wall:.1f} s: ratio "
                          f"**{took / wall:.2f}** (CPU seconds {took_cpu:.1f} / {cpu:.1f})")
    out["load_average_at_end"] = os.getloadavg()
    print(f"load average at start {out['load_average_at_start']}, at end {out['load_average_at_end']}; "
          f"torch threads {out['torch_threads']}")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
