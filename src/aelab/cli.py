"""Command line: `aelab train | sample | explain | evaluate | report | export`.

Thin by design: parse flags -> build a config -> call the library -> exit code. Every choice,
its help and every "unknown X" error come from the registries (presets, datasets, models,
samplers). Usage errors exit 2 (argparse); data and runtime errors exit 1 with one line
`aelab: error: ...`; Ctrl-C during training exits 130 after writing a checkpoint.

`main` is the one place that sets process-wide state: before torch loads, it sets
OMP_WAIT_POLICY=PASSIVE unless the user set it (OpenMP threads that spin while waiting turned a
busy shared 2-core machine into a 30x slowdown: 900-1800 ms per training step against 9-40 ms
passive). That is why this module imports nothing heavy at its top.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import AelabError

__all__ = ["main", "build_parser"]

COMPONENTS_HELP = "gmm: mixture components (default 1000, on 64 principal components)"


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value
    return parse


def _choices_help(registry) -> str:
    """'name: help; name: help' from a registry, for a flag's --help."""
    return "; ".join(f"{name}: {help}" for name, help in registry.helps().items())


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .config import DEVICES, PRECISIONS
    from .data.registry import DATASETS
    from .models import ACTIVATIONS, MODELS
    from .presets import list_presets

    presets = list_presets()
    p = sub.add_parser("train", help="train a model into a run folder",
                       description="Train an autoencoder. Presets: " +
                       "; ".join(f"{k}: {v}" for k, v in presets.items()))
    p.add_argument("--preset", choices=list(presets), help="default: seed")
    p.add_argument("--dataset", choices=DATASETS.names(), help="default: mnist")
    p.add_argument("--data-dir", help="folder with the four IDX files (gz or raw)")
    p.add_argument("--epochs", type=_positive(int))
    p.add_argument("--batch-size", type=_positive(int))
    p.add_argument("--lr", type=_positive(float))
    p.add_argument("--latent-dim", type=_positive(int))
    p.add_argument("--model", dest="architecture", choices=MODELS.names(),
                   help=_choices_help(MODELS) + " (default: the preset's)")
    p.add_argument("--output-activation", choices=ACTIVATIONS.names())
    p.add_argument("--beta", type=float, help="VAE: weight of the KL term")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the loss")
    p.add_argument("--checkpoint-minutes", type=_positive(float),
                   help="also checkpoint inside epochs this often (default 10)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="write TensorBoard scalars and images to RUN_DIR/tensorboard")
    p.add_argument("--out", help="run folder (default runs/<preset>-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=_cmd_train)


RESUME_MAY_CHANGE = ("epochs", "data_dir", "checkpoint_minutes")  # the rest would change the run


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import default_run_dir, train

    if args.resume and not args.out:
        raise AelabError("--resume needs --out RUN_DIR")
    if args.resume and args.force:
        raise AelabError("--resume and --force contradict each other; choose one")
    overrides = {k: getattr(args, k) for k in (
        "dataset", "data_dir", "epochs", "batch_size", "lr", "latent_dim", "architecture",
        "output_activation", "beta", "seed", "device", "precision", "compile", "checkpoint_minutes",
        "tensorboard")}
    if args.resume:
        from .rundir import RunDir

        fixed = [f"--{k.replace('_', '-')}" for k in ("preset", *overrides)
                 if getattr(args, k) is not None and k not in RESUME_MAY_CHANGE]
        if fixed:
            raise AelabError(f"--resume continues the run as configured; {', '.join(fixed)} cannot change "
                             f"(only {', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE)})")
        cfg, _ = RunDir(args.out).read_config()
        cfg.train.epochs = args.epochs or cfg.train.epochs
        cfg.train.checkpoint_minutes = args.checkpoint_minutes or cfg.train.checkpoint_minutes
        cfg.data.data_dir = args.data_dir or cfg.data.data_dir
    else:
        from .presets import resolve_config

        cfg = resolve_config(args.preset or "seed", overrides)
    args.out = args.out or str(default_run_dir(cfg.preset))  # named now, so Ctrl-C can say where
    train(cfg, args.out, resume=args.resume, force=args.force, quiet=args.quiet)
    return 0


def _add_sample(sub: argparse._SubParsersAction) -> None:
    from .config import DEVICES
    from .samplers import RECOMMENDED, SAMPLERS

    p = sub.add_parser("sample", help="decode codes drawn by a sampler into images")
    p.add_argument("run_dir")
    p.add_argument("--sampler", default="normal", choices=SAMPLERS.names(),
                   help=_choices_help(SAMPLERS) + f". Default normal (the tutorial's); for digits "
                   f"use {RECOMMENDED}")
    p.add_argument("--n", type=_positive(int), default=128)
    p.add_argument("--out", help="image grid PNG (default RUN_DIR/samples/<sampler>.png)")
    p.add_argument("--npy", help="also save the images as float32 (n, 28, 28) in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--components", type=_positive(int), help=COMPONENTS_HELP)
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from .figures import grid_figure, save_figure
    from .run import load_run

    run = load_run(args.run_dir, device=args.device)
    kwargs = {"n_components": args.components} if args.components else {}
    images = run.sample(args.n, args.sampler, args.seed, **kwargs).numpy()
    out = Path(args.out) if args.out else run.path / "samples" / f"{args.sampler}.png"
    try:
        save_figure(grid_figure(images[:256], f"{args.sampler} codes through the decoder"), out)
        if args.npy:
            Path(args.npy).parent.mkdir(parents=True, exist_ok=True)
            np.save(args.npy, images.astype(np.float32))
    except OSError as e:
        raise AelabError(f"cannot write samples: {e.strerror or e}") from None
    print(f"aelab: wrote {out}" + (f" and {args.npy}" if args.npy else ""))
    return 0


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from .config import DEVICES

    p = sub.add_parser("explain", help="why N(0, I) noise through the decoder gives no digits, "
                       "measured: RUN_DIR/explain/")
    p.add_argument("run_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_run

    path = explain_run(args.run_dir, seed=args.seed, device=args.device)
    print(f"aelab: wrote {path}")
    print(path.read_text().split("\n\n")[1] if path.is_file() else "")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from .config import DEVICES

    p = sub.add_parser("evaluate", help="reconstruction and sample metrics: RUN_DIR/evaluation.json")
    p.add_argument("run_dir")
    p.add_argument("--n", type=_positive(int), default=5000, help="samples per sampler (default 5000)")
    p.add_argument("--samplers", help="comma-separated (default: every sampler that applies)")
    p.add_argument("--components", type=_positive(int), help=COMPONENTS_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run, format_table
    from .samplers import SAMPLERS

    samplers = args.samplers.split(",") if args.samplers else None
    for name in samplers or []:  # before the slow setup, so the error is the only line
        SAMPLERS.get(name)
    result = evaluate_run(args.run_dir, n=args.n, samplers=samplers, seed=args.seed, device=args.device,
                          components=args.components)
    print(format_table(result))
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained page: RUN_DIR/report.html")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(f"aelab: wrote {write_report(args.run_dir)}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export encoder and decoder to ONNX")
    p.add_argument("run_dir")
    p.add_argument("--onnx", required=True, metavar="DIR", help="folder for encoder.onnx and decoder.onnx")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    paths = export_onnx(args.run_dir, args.onnx)
    print("aelab: wrote " + ", ".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aelab", description="Autoencoders on MNIST-like data: "
                                     "reproduce, explain, sample, measure.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_sample, _add_explain, _add_evaluate, _add_report, _add_export):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; the user's setting wins
    parser = build_parser()
    args = parser.parse_args(argv)
    from .engine import Interrupted

    try:
        return args.func(args)
    except Interrupted as e:
        out = getattr(args, "out", None) or "RUN_DIR"
        print(f"aelab: {e}; resume with: aelab train --out {out} --resume", file=sys.stderr)
        return 130
    except AelabError as e:
        print(f"aelab: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # full or read-only disk, permissions
        name = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"aelab: error: {e.strerror or e}{name}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
