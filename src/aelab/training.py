"""`train(config)`: a run folder from a config. Wires data, model, engine, checkpoints, figures.

    python -m aelab train --preset seed --out runs/seed

Single process by default; under `torchrun --nproc-per-node N -m aelab train ...` it trains
with DistributedDataParallel and SyncBatchNorm, and only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from . import dense_step, matmul, threads
from .checkpoint import capture_state, load_checkpoint, restore_state, save_checkpoint
from .config import Config
from .data import ImageData, load_dataset
from .data.images import to_float_images
from .distributed import init_distributed, sync_batchnorm, wrap_ddp
from .engine import TrainState, cpu_threads, fit
from .errors import AelabError
from .extras import install_hint
from .figures import grid_figure, loss_figure, reconstruction_figure, save_figure
from .files import writable_dir
from .final import final_record, reconstruct_images
from .models import create_model, model_warning
from .optim import layer_adam, make_optimizer
from .report import refresh_report
from .run import Run, load_run, pick_device
from .rundir import RunDir
from .splits import Split
from .version import __version__

__all__ = ["train", "default_run_dir", "final_record", "FINAL"]

FINAL = "final.json"  # the finished run's numbers on every split, the test split's only here


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def default_run_dir(preset: str) -> Path:
    return Path("runs") / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: Config, out: str | Path | None = None, *, resume: bool = False, force: bool = False,
          quiet: bool = False, data: ImageData | None = None,
          log: Callable[[str], None] = _stderr,
          on_epoch: Callable[[dict], None] | None = None) -> Run:
    """Train the model `cfg` describes into run folder `out`; return the finished `Run`.

    With `resume=True`, `out` must hold a checkpoint; training continues from it with the run's
    saved config, except `cfg.train.epochs` (which may extend a finished run),
    `cfg.train.checkpoint_minutes` and `cfg.data.data_dir` (where to find the same files).
    `on_epoch(record)` is called after each epoch's record is written (e.g. a progress bar).
    The per-epoch validation uses the split `cfg.train.valid_fraction` names (`aelab.splits`);
    the test split is scored once at the end into `RUN_DIR/final.json`.
    """
    rank, world, dist_device = init_distributed(cfg.train.device)
    run_dir = RunDir(out or default_run_dir(cfg.preset))
    if resume:
        saved, _ = run_dir.read_config()
        cfg = dataclasses.replace(
            saved, data=dataclasses.replace(saved.data, data_dir=cfg.data.data_dir or saved.data.data_dir),
            train=dataclasses.replace(saved.train, epochs=cfg.train.epochs,
                                      checkpoint_minutes=cfg.train.checkpoint_minutes))
    cfg.validate().resolved()
    if cfg.data.data_dir:  # absolute, so the run's config finds the data from any working directory
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, data_dir=str(Path(cfg.data.data_dir).expanduser().resolve())))
    say = log if rank == 0 else (lambda line: None)
    created = _first_missing(run_dir.path) if rank == 0 and not resume else None
    if rank == 0:
        run_dir.prepare(resume=resume, force=force)  # drops final.json: it belongs to the old weights
        if (warning := model_warning(cfg.model)) and not resume:
            say(f"aelab: warning: {warning}")
    if world > 1:
        dist.barrier()
    lock = run_dir.lock() if rank == 0 else nullcontext()
    with lock, _removed_if_unused(run_dir, created):  # only the lock's holder cleans up
        data = data or load_dataset(cfg.data.dataset, cfg.data.data_dir, progress=not quiet,
                                    log=(lambda line: None) if quiet else say)
        device = dist_device or pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        data_gen = torch.Generator().manual_seed(cfg.train.seed)
        model = create_model(cfg.model).to(device)
        if world > 1:
            model = sync_batchnorm(model, device)
            torch.manual_seed(cfg.train.seed + rank)  # VAE noise differs across ranks
        optimizer = make_optimizer(model, cfg.train.lr, device, cfg.train.decoder_weight_decay)
        # on CPU, the hand-written step of the dense AE is 10-15% faster than autograd, same result
        hand_written = trains_by_hand(cfg, model, device, world)
        probe = (threads.StepProbe(model, data.train_images, cfg.train.batch_size, cfg.train.lr,
                                   hand_written=hand_written, precision=cfg.train.precision)
                 if device.type == "cpu" else None)
        _check_matmul(cfg, hand_written, device)
        if not resume:  # a resumed run keeps the setting it started with
            cfg, threads_info = threads.resolve(cfg, probe, world=world,
                                                log=(lambda line: None) if quiet else say)
        watch = (threads.Watch(probe, (cpu_threads(cfg), threads.matmul_of(cfg)), threads.thread_limit(), say)
                 if probe is not None and world == 1 else None)
        state = TrainState()
        if resume:
            _check_same_data(run_dir, data)
            tensors, meta = load_checkpoint(run_dir.checkpoint)
            state = restore_state(tensors, meta, model, optimizer, data_gen)
            if state.epoch >= cfg.train.epochs:
                say(f"aelab: {run_dir.path} already has {state.epoch} epochs; pass --epochs N to extend it")
            else:
                say(f"aelab: resuming {run_dir.path} at epoch {state.epoch + 1}, step {state.epoch_step}")
        elif rank == 0:
            run_dir.write_json(run_dir.config, {
                "config": cfg.to_dict(), "data": data.info(), "threads": threads_info,
                "versions": {"aelab": __version__, "torch": torch.__version__}})
            # epoch 0: a valid checkpoint exists from the start, so even a divergence or kill in
            # epoch 1 leaves one behind, and --resume always has something to continue from
            save_checkpoint(run_dir.checkpoint, *capture_state(model, optimizer, state, data_gen))
        if rank == 0:
            run_dir.write_metrics(state.metrics)  # drops any epoch logged after the checkpoint

        split = Split.of(data, cfg.train.valid_fraction)
        train_u8 = split.train_images.to(device)
        valid_u8 = split.valid_images.to(device)
        shown = split.valid_images[:25]  # the first validation batch, 25 images (the tutorial's)
        shown_float = to_float_images(shown).reshape(-1, 28, 28).numpy()
        loss_fn = model.loss
        if world > 1:
            loss_fn = wrap_ddp(model, device)
        if cfg.train.compile:
            loss_fn = torch.compile(loss_fn)
        grad_fn = step_fn = valid_fn = None
        if hand_written:
            grads = dense_step.DenseStep(model, threads.matmul_of(cfg))
            valid_fn = grads.evaluate
            if (update := layer_adam(optimizer)) is not None:  # each layer's right after its gradients
                step_fn = functools.partial(grads.train_step, update=update)
            else:
                grad_fn = grads
        writer = _tensorboard(run_dir, cfg) if rank == 0 else None

        def on_epoch_end(record: dict, state: TrainState) -> None:
            if rank != 0:
                return
            run_dir.write_metrics(state.metrics)
            if on_epoch is not None:
                on_epoch(record)
            recon = reconstruct_images(model, shown.to(device))
            save_figure(reconstruction_figure(shown_float, recon.numpy(), f"epoch {record['epoch']}"),
                        run_dir.figures / f"epoch_{record['epoch']:03d}.png")
            if writer is not None:
                writer.add_scalar("loss/train", record["train_loss"], record["epoch"])
                writer.add_scalar("loss/valid", record["valid_loss"], record["epoch"])
                writer.add_scalar("lr", record["lr"], record["epoch"])
                grid = torch.zeros(25, 28, 28)
                grid[:len(recon)] = recon[:25]  # 5 x 5 digits as one (1, 140, 140) CHW picture
                grid = grid.reshape(5, 5, 28, 28).permute(0, 2, 1, 3).reshape(1, 5 * 28, 5 * 28)
                writer.add_image("reconstruction", grid, record["epoch"])
                writer.flush()
            if not quiet:
                say(f"epoch {record['epoch']:3d}/{cfg.train.epochs}  train {record['train_loss']:.5f}  "
                    f"valid {record['valid_loss']:.5f}  valid mse {record['valid_mse']:.5f}  "
                    f"{record['seconds']:.1f} s")
            if watch is not None:
                watch.epoch_done(record)

        def checkpoint(state: TrainState) -> None:
            if rank == 0:
                tensors, meta = capture_state(model, optimizer, state, data_gen)
                save_checkpoint(run_dir.checkpoint, tensors, meta)

        try:
            state = fit(cfg, model, optimizer, train_u8, valid_u8, state, data_gen,
                        save_checkpoint=checkpoint, on_epoch_end=on_epoch_end, loss_fn=loss_fn,
                        grad_fn=grad_fn, step_fn=step_fn, valid_fn=valid_fn,
                        progress=not quiet and sys.stderr.isatty())
        finally:
            if writer is not None:
                writer.close()
            if rank == 0 and state.metrics:
                save_figure(loss_figure(state.metrics, f"{cfg.preset}: loss per epoch"),
                            run_dir.figures / "loss.png")
        if rank == 0:
            run_dir.write_weights(model)
            run_dir.write_json(run_dir.path / FINAL, final_record(model, state.metrics, split, data, device,
                                                                          cpu_threads(cfg)))
            recon = reconstruct_images(model, shown.to(device))
            save_figure(grid_figure(shown_float, "validation input"),
                        run_dir.figures / "result_input.png")
            save_figure(grid_figure(recon.numpy(), "autoencoder output"),
                        run_dir.figures / "result_output.png")
            refresh_report(run_dir.path, say)  # a user's file in figures/ must not fail a finished run
            last = state.metrics[-1]
            epochs = f"{state.epoch} epoch{'s' if state.epoch != 1 else ''}"
            say(f"aelab: finished {run_dir.path}: {epochs}, valid loss {last['valid_loss']:.5f}, "
                f"valid mse {last['valid_mse']:.5f}")
    if world > 1:
        dist.barrier()
    return load_run(run_dir.path, device="cpu")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (`path` itself, or a parent)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return missing
        missing = p
    return missing


@contextmanager
def _removed_if_unused(run_dir: RunDir, created: Path | None) -> Iterator[None]:
    """On a failure before the run wrote its config (no data, say), remove the folders `prepare`
    made for it, so each failed try with the default --out leaves nothing behind."""
    try:
        yield
    except BaseException:
        if created is not None:
            run_dir.remove_if_unused(top=created)
        raise


def trains_by_hand(cfg: Config, model: nn.Module, device: torch.device, world: int = 1) -> bool:
    """Whether `train` runs this model through `aelab.dense_step` (and its validation pass through
    the step's products) rather than autograd: the dense AE, one CPU process, fp32, not compiled."""
    return (world == 1 and device.type == "cpu" and not cfg.train.compile
            and cfg.train.precision == "fp32" and dense_step.supports(model))


def _check_matmul(cfg: Config, hand_written: bool, device: torch.device) -> None:
    """A backend other than torch's runs only in the hand-written step, and only where it exists."""
    asked = cfg.train.matmul_chosen or cfg.train.matmul
    if asked in (matmul.AUTO, "torch"):
        return
    if not hand_written:
        raise AelabError(f"--matmul {asked} applies to the hand-written step of a dense autoencoder "
                         f"on CPU in fp32 (the seed presets' model); this run trains on "
                         f"{device.type} through autograd: leave --matmul at auto or pass torch")
    if not matmul.available(asked):
        raise AelabError(f"--matmul {asked}: this torch build has no working {asked} "
                         f"(torch {torch.__version__}); pass --matmul torch")


def _check_same_data(run_dir: RunDir, data: ImageData) -> None:
    """Resume is exact only on the data the run started with; config.json records it."""
    _, saved = run_dir.read_config()
    now = data.info()
    for key in ("n_train", "n_test", "files"):
        if key in saved and saved[key] != now[key]:
            raise AelabError(f"the data changed since {run_dir.path} started ({key}: "
                             f"{str(saved[key])[:80]} then, {str(now[key])[:80]} now); "
                             f"resume needs the same files")


def _tensorboard(run_dir: RunDir, cfg: Config):  # -> SummaryWriter | None
    if not cfg.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AelabError("--tensorboard needs the tensorboard package: "
                         + install_hint("tensorboard")) from None
    # tensorboard opens its files itself: make sure the folder is a real one inside the run first
    return SummaryWriter(log_dir=str(writable_dir(run_dir.path / "tensorboard")))
