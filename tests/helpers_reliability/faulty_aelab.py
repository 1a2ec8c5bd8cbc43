"""`python faulty_aelab.py ARGS...` = `python -m aelab ARGS...` with faults injected, for tests.

Faults come from the environment, AELAB_TEST_FAULT="KIND:N[:BYTES],...". Positions are global
(they count the whole run, across resumes), and a kill fires at the first chance at or after its
position, so a chain of kill/resume cycles hits every point it names:

    kill-after-step:S        SIGKILL right after optimizer step S (weights updated, the step not yet
                             counted, no checkpoint since)
    kill-in-checkpoint:S     SIGKILL in the middle of writing the first checkpoint at step >= S
                             (half of the temp file written, not yet renamed)
    kill-after-checkpoint:S  SIGKILL right after the first checkpoint at step >= S is complete
    kill-after-metrics:E     SIGKILL right after an epoch's end wrote metrics.jsonl with >= E epochs
                             (the epoch is in metrics.jsonl, its checkpoint not yet written)
    kill-before-weights:1    SIGKILL just before model.safetensors is written
    fsize-after-checkpoint:S:BYTES  after the first checkpoint at step >= S, files may grow to
                             BYTES at most (RLIMIT_FSIZE): later bigger writes fail in the kernel
                             with EFBIG, the way a full disk fails them
    pace:MS                  each optimizer step takes at least MS milliseconds (does not change
                             any number computed), so kills from outside land at a known pace

Each self-kill prints `fault: killed ...` to stderr first.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time


def _die(where: str) -> None:
    print(f"fault: killed {where}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _global_step(opt) -> int:
    states = list(opt.state.values())
    return int(states[0]["step"]) if states else 0


def install(spec: str) -> None:
    import aelab.checkpoint
    import aelab.run
    import aelab.training

    step_hooks = []
    for fault in filter(None, spec.split(",")):
        kind, _, rest = fault.partition(":")
        n_text, _, extra = rest.partition(":")
        n = int(n_text or "1")
        if kind == "kill-after-step":
            def hook(opt, n=n):
                if _global_step(opt) >= n:
                    _die(f"after optimizer step {_global_step(opt)}")
            step_hooks.append(hook)
        elif kind == "pace":
            step_hooks.append(_pace(n / 1000))
        elif kind in ("kill-in-checkpoint", "kill-after-checkpoint", "fsize-after-checkpoint"):
            _wrap_checkpoint(aelab, kind, n, extra)
        elif kind == "kill-after-metrics":
            _wrap_metrics(aelab, n)
        elif kind == "kill-before-weights":
            def write_weights(self, model, path=None):
                _die("before writing model.safetensors")
            aelab.run.RunDir.write_weights = write_weights
        else:
            raise SystemExit(f"faulty_aelab: unknown fault {fault!r}")
    if step_hooks:
        real_make = aelab.training.make_optimizer

        def make_optimizer(*args, **kwargs):
            opt = real_make(*args, **kwargs)
            opt.register_step_post_hook(lambda opt, a, k: [h(opt) for h in step_hooks])
            return opt
        aelab.training.make_optimizer = make_optimizer


def _pace(seconds: float):
    last = [time.monotonic()]

    def hook(opt) -> None:
        time.sleep(max(0.0, seconds - (time.monotonic() - last[0])))
        last[0] = time.monotonic()
    return hook


def _wrap_checkpoint(aelab, kind: str, n: int, extra: str) -> None:
    real_save, real_atomic = aelab.training.save_checkpoint, aelab.checkpoint.atomic_write_bytes

    def torn_write(path, data):
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
        _die(f"while writing a checkpoint ({len(data) // 2} of {len(data)} bytes written)")

    def save_checkpoint(path, tensors, state):
        if kind == "kill-in-checkpoint" and state["step"] >= n:
            aelab.checkpoint.atomic_write_bytes = torn_write
        try:
            real_save(path, tensors, state)
        finally:
            aelab.checkpoint.atomic_write_bytes = real_atomic
        if kind == "kill-after-checkpoint" and state["step"] >= n:
            _die(f"after the checkpoint at step {state['step']}")
        if kind == "fsize-after-checkpoint" and state["step"] >= n:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, don't kill
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(extra), resource.RLIM_INFINITY))
    aelab.training.save_checkpoint = save_checkpoint


def _wrap_metrics(aelab, n: int) -> None:
    real_metrics = aelab.run.RunDir.write_metrics
    calls = [0]

    def write_metrics(self, records):
        real_metrics(self, records)
        calls[0] += 1
        if calls[0] > 1 and len(records) >= n:  # call 1 rewrites the checkpoint's metrics at start
            _die(f"after writing metrics of {len(records)} epochs")
    aelab.run.RunDir.write_metrics = write_metrics


if __name__ == "__main__":
    install(os.environ.get("AELAB_TEST_FAULT", ""))
    from aelab.cli import main

    sys.exit(main(sys.argv[1:]))
