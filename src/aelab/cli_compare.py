"""`aelab models` and `aelab compare`: their flags and their (thin) handlers, beside `aelab.cli`;
and `components_help`, the --components help of compare, sample and evaluate.

    aelab models --latent-dim 2
    aelab compare --models dense,dense-linear,conv --latent-dims 2,8,16,32,64,128 --out runs/compare
"""

from __future__ import annotations

import argparse
import sys

from .cli_types import MAX_COMPONENTS, MAX_EPOCHS, MAX_LATENT, MAX_SAMPLES, count, positive, seed

__all__ = ["add_models", "add_compare", "components_help"]


def components_help(vae: bool = True) -> str:
    """--components' help, from the gmm sampler's own defaults (and a VAE run's), so they cannot drift.

    `vae=False` leaves the VAE's out (`aelab compare` samples its VAEs from the prior).
    """
    import inspect

    from .samplers import GMMSampler
    from .samplers.fitting import VAE_GMM

    own = {k: v.default for k, v in inspect.signature(GMMSampler).parameters.items()}
    text = (f"gmm: mixture components (default {own['n_components']}, on {own['pca_dims']} principal "
            "components")
    if vae:
        keep = VAE_GMM.get("keep_variance", own["keep_variance"])
        text += (f"; for a VAE {VAE_GMM['n_components']}, on the axes that hold {100 * keep:g}%% of the code "
                 "variance")
    return text + ")"


def add_models(sub: argparse._SubParsersAction) -> None:
    from .models.blocks import TUTORIAL_WIDTH

    p = sub.add_parser("models", help="list the models: parameters at a latent size, and what each is")
    p.add_argument("--latent-dim", type=positive(int, MAX_LATENT), default=128,
                   help="code size (default 128)")
    p.add_argument("--width-dim", type=positive(int, MAX_LATENT),
                   help=f"dense families: w of the hidden widths 4w, 2w (default: the latent size; "
                   f"{TUTORIAL_WIDTH} gives the tutorial's {4 * TUTORIAL_WIDTH}, {2 * TUTORIAL_WIDTH})")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from .models.catalog import describe_models

    rows = describe_models(args.latent_dim, args.width_dim)
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'AE params':>10}  {'VAE params':>10}  (latent {args.latent_dim})")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['ae_params']:>10,}  {r['vae_params']:>10,}  {r['help']}")
    return 0


def add_compare(sub: argparse._SubParsersAction) -> None:
    from .data.registry import DATASETS

    p = sub.add_parser("compare", help="train and score model families across latent sizes, beside PCA",
                       description="Train every model x latent size into OUT/<model>-<latent>/ (finished "
                       "runs are reused, interrupted ones resumed), fit PCA at each size, score "
                       "reconstruction on the test split and samples by FID; write OUT/compare.json, "
                       "OUT/compare.md and OUT/compare-*.png. A model name ending in -vae is its VAE.")
    p.add_argument("--models", default="dense,dense-linear,conv", help="comma-separated "
                   "(default dense,dense-linear,conv; e.g. dense-vae, conv-vae)")
    p.add_argument("--latent-dims", default="2,8,16,32,64,128", help="comma-separated code sizes")
    p.add_argument("--epochs", type=positive(int, MAX_EPOCHS), default=20)
    p.add_argument("--data-dir", help="folder with the four IDX files (gz or raw)")
    p.add_argument("--dataset", choices=DATASETS.names(), help="default: mnist")
    p.add_argument("--n", type=count(MAX_SAMPLES), default=2000,
                   help=f"samples per FID (default 2000, at most {MAX_SAMPLES:,}; 0: no FID)")
    p.add_argument("--components", type=positive(int, MAX_COMPONENTS), help=components_help(vae=False) +
                   " of each autoencoder's sampler (a VAE is sampled from its prior)")
    p.add_argument("--seed", type=seed, default=0, help="(default 0)")
    p.add_argument("--out", required=True, help="folder for the runs and the tables")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    import shlex

    from .compare import compare, grid_from_text
    from .engine import Interrupted

    grid = grid_from_text(args.models, args.latent_dims)
    words = ["aelab", "compare", "--models", args.models, "--latent-dims", args.latent_dims,
             "--epochs", str(args.epochs)]
    defaults = {"--n": 2000, "--seed": 0}
    for flag, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir), ("--n", args.n),
                        ("--components", args.components), ("--seed", args.seed), ("--out", args.out)):
        if value is not None and value != defaults.get(flag):
            words += [flag, str(value)]
    command = " ".join(shlex.quote(w) for w in words)
    try:
        result = compare(grid, args.out, epochs=args.epochs, data_dir=args.data_dir,
                         dataset=args.dataset or "mnist", n_samples=args.n, seed=args.seed,
                         progress=not args.quiet, command=command, components=args.components)
    except Interrupted as e:
        print(f"aelab: {e}", file=sys.stderr)
        return 130
    print(result["markdown"])
    return 0
