"""How long one decode takes through `aelab explore`: real HTTP on localhost, as the page sends it.

    python benchmarks/explore_latency.py                 # trains a 1-epoch seed-preset run first
    python benchmarks/explore_latency.py RUN_DIR --n 500

Starts the explore app on a free 127.0.0.1 port in a thread and sends N requests over one
keep-alive connection (as a browser does): POST /api/decode with one code (what a slider move or a
hover over the 2-D map sends), /api/point (a hover over a map point), /api/reconstruct (a drawing,
centred like MNIST, with its 8 nearest training digits). Prints median and p95 milliseconds of each,
and of `Run.decode` alone on the same code, so the server's share is visible. Without RUN_DIR it
trains the seed preset (784-128 autoencoder) for 1 epoch on the MNIST files it finds: --data-dir,
else ../shared/datasets/mnist-subset beside the checkout, else aelab's bundled subset (offline).
Latency does not depend on how well the run is trained, only on its architecture.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("AELAB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _train_seed_run(out: Path, data_dir: str | None) -> Path:
    from aelab import resolve_config
    from aelab.training import train

    shared = ROOT.parent / "shared" / "datasets" / "mnist-subset"
    data_dir = data_dir or (str(shared) if shared.is_dir() else None)
    overrides = {"epochs": 1, "device": "cpu", **({"data_dir": data_dir} if data_dir else {})}
    train(resolve_config("seed", overrides), out, quiet=True, log=lambda s: None)
    return out


def _stats(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):6.2f} ms   p95 {p95:6.2f} ms   (n={len(ms)})"


def _time_requests(conn: http.client.HTTPConnection, path: str, bodies: list[bytes]) -> list[float]:
    out = []
    for body in bodies:
        t = time.perf_counter()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        out.append((time.perf_counter() - t) * 1000)
        if resp.status != 200:
            sys.exit(f"{path} answered {resp.status}: {data[:200]!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", help="a run folder (default: train a 1-epoch seed run)")
    ap.add_argument("--n", type=int, default=300, help="timed requests per endpoint (default 300)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--data-dir", help="MNIST files for the run trained when no RUN_DIR is given")
    args = ap.parse_args(argv)

    import aelab
    from aelab.explore import create_app
    from aelab.explore.serve import start_background

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else _train_seed_run(Path(tmp) / "seed", args.data_dir)
        run = aelab.load_run(run_dir)
        app = create_app(run_dir, log=lambda s: None)
        url, stop = start_background(app)
        state = app.state.explore
        try:
            host, port = url.split("//")[1].strip("/").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            rng = np.random.default_rng(0)
            total = args.warmup + args.n
            idx = rng.integers(0, len(state.val_codes), total)
            codes = [state.val_codes[i] + 0.1 * rng.standard_normal(run.latent_dim).astype(np.float32)
                     for i in idx]
            drawings = [state.val_images[i].astype(np.float64) / 255 for i in idx]
            cases = {
                "/api/decode (1 code)": [json.dumps({"codes": [c.tolist()]}).encode() for c in codes],
                "/api/point": [json.dumps({"index": int(i)}).encode() for i in idx],
                "/api/reconstruct": [json.dumps({"image": d.reshape(-1).tolist(), "center": True}).encode()
                                     for d in drawings],
            }
            print(f"run {run_dir} ({run.config.model.kind}, latent_dim {run.latent_dim}, "
                  f"{len(state.train_codes)} training codes), torch {torch.__version__}, "
                  f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs")
            for name, bodies in cases.items():
                path = name.split()[0]
                _time_requests(conn, path, bodies[:args.warmup])
                print(f"{name:22s} {_stats(_time_requests(conn, path, bodies[args.warmup:]))}")
            alone = []
            for c in codes:
                t = time.perf_counter()
                run.decode(torch.from_numpy(c[None]))
                alone.append((time.perf_counter() - t) * 1000)
            print(f"{'Run.decode alone':22s} {_stats(alone[args.warmup:])}")
            conn.close()
        finally:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
