"""Command line: `aelab train | models | compare | sample | explain | evaluate | report | export | explore`.

Thin by design: parse flags -> build a config -> call the library -> exit code. Every choice,
its help and every "unknown X" error come from the registries (presets, datasets, models,
samplers). Usage errors exit 2 (argparse); data and runtime errors exit 1 with one line
`aelab: error: ...`; Ctrl-C during training exits 130 after writing a checkpoint.

`main` is the one place that sets process-wide state: before torch loads, and only when the user
has not set it, it chooses OpenMP's wait policy (`wait_policy`): none for `train`, whose
`--threads auto` measures the step and picks the count (passive OpenMP threads made two threads
slower than one: 6.13 against 5.08 s per epoch, while libgomp's default gave 3.05 s; docs/speed.md),
and PASSIVE for every other command, which run on torch's default threads beside whatever else
runs (spinning threads turned a busy shared 2-core machine into a 30x slowdown). That is why this
module imports nothing heavy at its top.

Longer than 300 lines because every command's flags and its handler sit side by side, one short
pair per command; a command that grows more than a handful of lines moves into its own module.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .cli_types import (
    MAX_BATCH,
    MAX_COMPONENTS,
    MAX_EPOCHS,
    MAX_LATENT,
    MAX_SAMPLES,
    positive,
    seed,
    threads,
)
from .errors import AelabError

__all__ = ["main", "build_parser"]

PATH_ARGS = ("run_dir", "out", "npy", "data_dir", "onnx")


def _default_samplers_help() -> str:
    """--samplers' help: which samplers `aelab evaluate` runs unless named, from
    `applicable_samplers`, the function that decides it (asked about an AE and a VAE)."""
    from .samplers.fitting import applicable_samplers

    def names(kind: str, every: bool) -> list[str]:
        return applicable_samplers(kind, every=every)

    ae, vae = names("ae", False), names("vae", False)
    slow = [n for n in names("ae", True) if n not in ae]
    slow_vae = [n for n in names("vae", True) if n not in vae and n not in slow]

    def listed(words: list[str]) -> str:
        return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)

    only_vae = f" (and {listed(slow_vae)} for a VAE)" if slow_vae else ""
    return (f"comma-separated (default: {listed(ae)} for an autoencoder; {listed(vae)} for a VAE. "
            f"{listed(slow)}{only_vae} take minutes on a CPU and run only when named)")


def _choices_help(registry) -> str:
    """'name: help; name: help' from a registry, for a flag's --help."""
    return "; ".join(f"{name}: {help}" for name, help in registry.helps().items())


def _preset_default(field: str) -> str:
    """'(default: the preset's; seed: 20, vae: 150)' for a train flag whose default a preset sets."""
    from .config import section_of
    from .presets import get_preset

    values = {}
    for name in ("seed", "vae"):
        cfg = get_preset(name)
        values[name] = getattr(getattr(cfg, section_of(cfg, field)), field)
    return "(default: the preset's; " + ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}"
                                                 for k, v in values.items()) + ")"


EXAMPLES = {
    "train": "example: aelab train --data-dir DIR --out runs/seed   (the tutorial); "
             "aelab train --preset vae --out runs/vae; aelab train --out runs/seed --resume",
    "sample": "example: aelab sample runs/seed --sampler gmm --n 100 --out gmm.png",
    "explain": "example: aelab explain runs/seed   (then read runs/seed/explain/explain.md)",
    "evaluate": "example: aelab evaluate runs/seed --n 2000 --samplers normal,gmm",
    "report": "example: aelab report runs/seed   (then open runs/seed/report.html)",
    "export": "example: aelab export runs/seed --onnx exported/",
    "explore": "example: aelab explore runs/seed --port 8000   (then open http://127.0.0.1:8000/)",
    "models": "example: aelab models --latent-dim 2",
    "compare": "example: aelab compare --models dense,dense-linear,conv --latent-dims 2,16,128 "
               "--epochs 20 --out runs/compare",
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .config import DEVICES, PRECISIONS
    from .data.registry import DATASETS
    from .matmul import AUTO, MATMULS
    from .models import ACTIVATIONS, MODELS
    from .models.blocks import TUTORIAL_WIDTH
    from .presets import list_presets
    from .schedules import SCHEDULES

    presets = list_presets()
    p = sub.add_parser("train", help="train a model into a run folder",
                       description="Train an autoencoder. Presets: " +
                       "; ".join(f"{k}: {v}" for k, v in presets.items()))
    p.add_argument("--preset", choices=list(presets), help="(default: seed)")
    p.add_argument("--dataset", choices=DATASETS.names(), help="(default: mnist)")
    p.add_argument("--data-dir", help="folder with the four IDX files (gz or raw)")
    p.add_argument("--epochs", type=positive(int, MAX_EPOCHS), help=_preset_default("epochs"))
    p.add_argument("--batch-size", type=positive(int, MAX_BATCH), help=_preset_default("batch_size"))
    p.add_argument("--lr", type=positive(float), help="Adam's learning rate " + _preset_default("lr"))
    p.add_argument("--latent-dim", type=positive(int, MAX_LATENT),
                   help="code size " + _preset_default("latent_dim"))
    p.add_argument("--model", dest="architecture", choices=MODELS.names(),
                   help=_choices_help(MODELS) + " (default: the preset's)")
    p.add_argument("--width-dim", type=positive(int, MAX_LATENT),
                   help=f"dense families: w of the hidden widths 4w, 2w (default: the latent size; "
                   f"{TUTORIAL_WIDTH} gives the tutorial's {4 * TUTORIAL_WIDTH}, {2 * TUTORIAL_WIDTH})")
    p.add_argument("--variational", dest="kind", action="store_const", const="vae",
                   help="train the model as a VAE (Gaussian encoder, N(0, I) prior)")
    p.add_argument("--output-activation", choices=ACTIVATIONS.names(),
                   help="default: the model's own (dense: relu; VAEs, dense-linear, conv: sigmoid)")
    p.add_argument("--beta", type=float, help="VAE: weight of the KL term (default 1)")
    p.add_argument("--kl-warmup", dest="kl_warmup_epochs", type=float, metavar="EPOCHS",
                   help="VAE: beta rises linearly from 0 over this many epochs")
    p.add_argument("--code-penalty", type=float, metavar="BETA_Z",
                   help="AE: loss += BETA_Z * mean 0.5 ||z||^2 (a regularised autoencoder, RAE)")
    p.add_argument("--decoder-weight-decay", type=float, help="L2 weight decay on the decoder (RAE)")
    p.add_argument("--schedule", choices=SCHEDULES.names(), help=_choices_help(SCHEDULES) +
                   " (default: constant)")
    p.add_argument("--warmup-epochs", type=float, help="lr warm-up, in epochs (default 0)")
    p.add_argument("--augment-shift", type=int, metavar="PIXELS",
                   help="move each training image by a random offset of up to PIXELS (default 0)")
    p.add_argument("--valid-fraction", type=float, help="share of the training images held out for "
                   "validation (default: the preset's; 0 = validate on the test split, as the tutorial: "
                   "seed, seed-1st-try, vae; 1/12: rae and every compare run)")
    p.add_argument("--seed", type=seed, help="(default 0)")
    p.add_argument("--device", choices=DEVICES, help="(default auto: cuda, then mps, then cpu)")
    p.add_argument("--precision", choices=PRECISIONS, help="(default fp32)")
    p.add_argument("--threads", type=threads, metavar="auto|N",
                   help="CPU threads to train on (default auto: measured on a few steps at the start, "
                   "recorded in config.json; see aelab.threads)")
    p.add_argument("--matmul", choices=[AUTO, *MATMULS.names()],
                   help="the matrix products of the dense models' hand-written CPU step (default auto: "
                   "measured with --threads; " + "; ".join(f"{k}: {v}" for k, v in MATMULS.helps().items())
                   + "; see aelab.matmul)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the loss")
    p.add_argument("--checkpoint-minutes", type=positive(float),
                   help="also checkpoint inside epochs this often (default 10)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="write TensorBoard scalars and images to RUN_DIR/tensorboard")
    p.add_argument("--out", help="run folder (default runs/<preset>-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=_cmd_train)


RESUME_MAY_CHANGE = ("epochs", "data_dir", "checkpoint_minutes")  # the rest would change the run
CHOSEN = ("threads", "matmul")  # fields whose "auto" a run resolves into <field>_chosen
FLAGS = {"architecture": "--model", "kind": "--variational", "kl_warmup_epochs": "--kl-warmup"}  # not --field


def _flag(field: str) -> str:
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def _saved_value(cfg, field: str):
    from .config import section_of

    return cfg.preset if field == "preset" else getattr(getattr(cfg, section_of(cfg, field)), field)


def _own_values(cfg, field: str) -> list:
    """The values of `field` a resumed run accepts as its own: the saved one, and for threads and
    matmul also what auto chose."""
    own = [_saved_value(cfg, field)]
    return own + [getattr(cfg.train, field + "_chosen")] if field in CHOSEN else own


def _shown(cfg, field: str) -> str:
    chosen = getattr(cfg.train, field + "_chosen") if field in CHOSEN else None
    if _saved_value(cfg, field) == "auto" and chosen is not None:
        return f"auto, which chose {chosen}"
    return str(_saved_value(cfg, field))


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import default_run_dir, train

    if args.resume and not args.out:
        raise AelabError("--resume needs --out RUN_DIR")
    if args.resume and args.force:
        raise AelabError("--resume and --force contradict each other; choose one")
    overrides = {k: getattr(args, k) for k in (
        "dataset", "data_dir", "epochs", "batch_size", "lr", "latent_dim", "width_dim", "architecture",
        "kind", "output_activation", "beta", "kl_warmup_epochs", "code_penalty", "decoder_weight_decay",
        "schedule", "warmup_epochs", "augment_shift", "valid_fraction", "seed", "device", "precision",
        "compile", "checkpoint_minutes", "tensorboard", "threads", "matmul")}
    if args.resume:
        from .rundir import RunDir

        cfg, _ = RunDir(args.out).read_config()
        given = {"preset": args.preset, **overrides}
        changed = [f"{_flag(k)} {v} (the run has {_shown(cfg, k)})" for k, v in given.items()
                   if v is not None and k not in RESUME_MAY_CHANGE and v not in _own_values(cfg, k)]
        if changed:  # the same values as the run's own are fine: re-running a command with --resume works
            raise AelabError(f"--resume continues the run as configured; {', '.join(changed)} cannot change "
                             f"(only {', '.join(_flag(k) for k in RESUME_MAY_CHANGE)} can)")
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
    from .cli_compare import components_help
    from .config import DEVICES
    from .samplers import RECOMMENDED, SAMPLERS

    p = sub.add_parser("sample", help="decode codes drawn by a sampler into images")
    p.add_argument("run_dir")
    p.add_argument("--sampler", default="normal", choices=SAMPLERS.names(),
                   help=_choices_help(SAMPLERS) + f" (default: normal, the tutorial's; for digits "
                   f"use {RECOMMENDED})")
    p.add_argument("--n", type=positive(int, MAX_SAMPLES), default=128, help="how many images (default 128)")
    p.add_argument("--out", help="image grid PNG (default RUN_DIR/samples/<sampler>.png)")
    p.add_argument("--npy", help="also save the images as float32 (n, 28, 28) in [0, 1]")
    p.add_argument("--seed", type=seed, default=0, help="(default 0)")
    p.add_argument("--components", type=positive(int, MAX_COMPONENTS), help=components_help())
    p.add_argument("--device", choices=DEVICES, default="cpu", help="(default cpu)")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from .figures import grid_figure, save_figure
    from .files import atomic_write_bytes
    from .run import load_run

    if args.components and args.sampler != "gmm":
        raise AelabError(f"--components applies to the gmm sampler only, not {args.sampler}")
    run = load_run(args.run_dir, device=args.device)
    kwargs = {"n_components": args.components} if args.components else {}
    images = run.sample(args.n, args.sampler, args.seed, **kwargs).numpy()
    out = Path(args.out) if args.out else run.path / "samples" / f"{args.sampler}.png"
    save_figure(grid_figure(images[:256], f"{args.sampler} codes through the decoder"), out)
    if args.npy:
        buffer = io.BytesIO()
        np.save(buffer, images.astype(np.float32))
        atomic_write_bytes(args.npy, buffer.getvalue())
    print(f"aelab: wrote {out}" + (f" and {args.npy}" if args.npy else ""))
    _refresh_report(run.path)
    return 0


def _refresh_report(run_dir) -> None:
    """After a command added to a run: report.html shows it too (a problem is one warning)."""
    from .report import refresh_report

    def warn(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        refresh_report(run_dir, warn)
    except AelabError as e:
        warn(f"aelab: warning: report.html not refreshed ({e})")


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from .config import DEVICES

    p = sub.add_parser("explain", help="why N(0, I) noise through the decoder gives no digits, "
                       "measured: RUN_DIR/explain/")
    p.add_argument("run_dir")
    p.add_argument("--seed", type=seed, default=0, help="(default 0)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="(default cpu)")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_run

    path = explain_run(args.run_dir, seed=args.seed, device=args.device)
    print(f"aelab: wrote {path}")
    _refresh_report(args.run_dir)
    print(path.read_text().split("\n\n")[1] if path.is_file() else "")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from .cli_compare import components_help
    from .config import DEVICES

    p = sub.add_parser("evaluate", help="reconstruction and sample metrics: RUN_DIR/evaluation.json")
    p.add_argument("run_dir")
    p.add_argument("--n", type=positive(int, MAX_SAMPLES), default=5000,
                   help="samples per sampler (default 5000)")
    p.add_argument("--samplers", help=_default_samplers_help())
    p.add_argument("--components", type=positive(int, MAX_COMPONENTS), help=components_help())
    p.add_argument("--seed", type=seed, default=0, help="(default 0)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="(default cpu)")
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
    _refresh_report(args.run_dir)
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


class _Parser(argparse.ArgumentParser):
    """argparse with a two-line usage error: a short usage line, then the error (the full usage of
    a long command wraps over many lines)."""

    def error(self, message: str):  # argparse's own hook
        self.exit(2, f"usage: {self.prog} ... (see {self.prog} --help)\n{self.prog}: error: {message}\n")


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="the run's latent space in the browser (needs aelab[explore])",
                       description="Serve a local page over the run's latent space: draw a digit, move "
                       "along principal directions, a map of the codes, interpolation, samples. "
                       "Example: aelab explore runs/seed --port 8000")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                   "machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=_cmd_explore)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 65535")
    return value


def _cmd_explore(args: argparse.Namespace) -> int:
    from .explore import serve

    serve(args.run_dir, host=args.host, port=args.port, open_browser=args.open)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aelab", description="Autoencoders on MNIST-like data: "
                                     "reproduce, explain, sample, measure.")
    from .version import __version__

    parser.add_argument("--version", action="version", version=f"aelab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    from .cli_compare import add_compare, add_models

    for add in (_add_train, add_models, add_compare, _add_sample, _add_explain, _add_evaluate, _add_report,
                _add_export, _add_explore):
        add(sub)
    for name, command in sub.choices.items():
        command.epilog = EXAMPLES.get(name)
    return parser


# what `aelab train` sets; None leaves libgomp's default (spin a little, then sleep), measured best
# for `--threads auto` idle and beside a busy process (`python benchmarks/train_speed.py`)
TRAIN_WAIT_POLICY: str | None = None


def wait_policy(argv: Sequence[str]) -> str | None:
    """The OMP_WAIT_POLICY `main` gives the process for this command line unless the user set one
    (None: it sets none, and libgomp's default applies). `train` gets TRAIN_WAIT_POLICY; every
    other command PASSIVE, as they run on torch's default threads beside whatever else runs."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return TRAIN_WAIT_POLICY if command == "train" else "PASSIVE"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    policy = wait_policy(argv)
    if policy is not None:
        os.environ.setdefault("OMP_WAIT_POLICY", policy)  # before torch loads; the user's setting wins
    with warnings.catch_warnings():  # a warning is one line, like an error: no file name, no source line
        warnings.showwarning = _one_line_warning
        return _run(argv)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"aelab: warning: {message}", file=sys.stderr)


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .engine import Interrupted
    from .files import user_path

    try:
        for name in PATH_ARGS:  # ~ expanded once, here; ~nosuchuser is one line
            if name == "data_dir" and getattr(args, name, None) == "":
                args.data_dir = None  # --data-dir "$UNSET": not given, as before
            if getattr(args, name, None) is not None:
                label = "RUN_DIR" if name == "run_dir" else f"--{name.replace('_', '-')}"
                setattr(args, name, str(user_path(getattr(args, name), label)))
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
    except MemoryError:
        print("aelab: error: out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, unless AELAB_DEBUG=1 asks for the traceback
        if os.environ.get("AELAB_DEBUG"):
            raise
        print(f"aelab: error: unexpected {type(e).__name__}: {str(e)[:300]} (a bug in aelab; "
              f"AELAB_DEBUG=1 shows where)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
