"""The seed model's whole training step as one CUDA graph: train_speed.py's `cudagraph` variant.

    result = graphed_training(data, epochs=2, seed=0, device=torch.device("cuda"))

On a GPU this small model's step is ~100 short kernels, each launched from Python; launch
overhead, not arithmetic, sets the pace. Here the whole step (gather the batch by index, uint8 to
float, forward, MSE, backward, fused Adam, the loss sums) is captured once with
`torch.cuda.CUDAGraph` and replayed per batch: one launch per step. Only the batch's indices are
copied in before each replay. The last, smaller batch of an epoch runs eagerly on the same tensors.

Before capture, a few warm-up steps run on a side stream (as CUDA graph capture requires); then
weights, BatchNorm statistics and Adam's state are put back to their initial values in place
(the graph holds their addresses), so training starts from the same weights as aelab's.

`capture=False` runs the same bookkeeping without a graph (each "replay" runs the step eagerly):
that is how the logic is checked on a machine without CUDA (tests/test_engine_speed_flags.py).
Measured on no GPU yet.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from aelab.engine import evaluate_loss, to_float_batch
from aelab.models import create_model
from aelab.presets import resolve_config

WARMUP_STEPS = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam whose step can live in a CUDA graph (capturable: its step count stays on the device)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True, capturable=True)


class GraphedStep:
    """One training step of `model` on `train_u8[idx]`, captured as a CUDA graph for full batches."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_u8: torch.Tensor,
                 batch_size: int, capture: bool) -> None:
        self.model, self.optimizer, self.train_u8 = model, optimizer, train_u8
        device = train_u8.device
        self.idx = torch.zeros(batch_size, dtype=torch.int64, device=device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, mse, images
        self.graph = None
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.idx.copy_(torch.arange(batch_size, device=device) % len(train_u8))
        side = torch.cuda.Stream() if capture else None
        if side is not None:
            side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side) if side is not None else nullcontext():
            for _ in range(WARMUP_STEPS):  # allocates Adam's state and every buffer the step uses
                self.optimizer.zero_grad(set_to_none=True)
                self._step(self.idx)
        if side is not None:
            torch.cuda.current_stream().wait_stream(side)
            self.optimizer.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step(self.idx)
        self._reset(initial)

    def _step(self, idx: torch.Tensor) -> None:
        x = to_float_batch(self.train_u8.index_select(0, idx))
        loss, parts = self.model.loss(x)
        loss.backward()
        self.optimizer.step()
        self.sums += torch.stack([loss.detach().double(), parts["mse"].detach().double(),
                                  torch.ones((), dtype=torch.float64, device=x.device)]) * len(x)

    @torch.no_grad()
    def _reset(self, initial: dict[str, torch.Tensor]) -> None:
        """Weights and BatchNorm buffers back to `initial`, Adam's moments and step to zero, in place."""
        for k, v in self.model.state_dict().items():
            v.copy_(initial[k])
        for state in self.optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.zero_()
        self.sums.zero_()

    def __call__(self, idx: torch.Tensor) -> None:
        if len(idx) == len(self.idx):
            self.idx.copy_(idx)
            if self.graph is not None:
                self.graph.replay()
                return
            self.optimizer.zero_grad(set_to_none=False)
            self._step(self.idx)
        else:  # the epoch's last, smaller batch: eagerly, gradients zeroed in place
            self.optimizer.zero_grad(set_to_none=False)
            self._step(idx)


def graphed_training(data, epochs: int, seed: int, device: torch.device, batch_size: int = 128,
                     capture: bool | None = None) -> dict:
    """Train the seed preset's model with `GraphedStep`; per epoch (train + validation) seconds and
    valid MSE, in the shape train_speed.py's other measurements have."""
    capture = device.type == "cuda" if capture is None else capture
    cfg = resolve_config("seed", {"seed": seed})
    torch.manual_seed(seed)
    model = create_model(cfg.model).to(device)
    optimizer = _adam(model, cfg.train.lr)
    train_u8, valid_u8 = data.train_images.to(device), data.test_images.to(device)
    n = len(train_u8)
    n_batches = n // batch_size + (1 if n % batch_size >= 2 else 0)
    gen = torch.Generator().manual_seed(seed)
    _sync(device)
    started = time.perf_counter()
    step = GraphedStep(model, optimizer, train_u8, batch_size, capture)
    _sync(device)
    capture_seconds = time.perf_counter() - started
    records = []
    for epoch in range(1, epochs + 1):
        _sync(device)
        started = time.perf_counter()
        model.train()
        step.sums.zero_()
        perm = torch.randperm(n, generator=gen).to(device)
        for b in range(n_batches):
            step(perm[b * batch_size:(b + 1) * batch_size])
        sums = step.sums.tolist()
        valid = evaluate_loss(model, valid_u8)
        _sync(device)
        records.append({"epoch": epoch, "seconds": time.perf_counter() - started,
                        "train_mse": sums[1] / sums[2], "valid_mse": valid["mse"]})
    return {"epochs": records, "valid_mse": records[-1]["valid_mse"], "capture_seconds": capture_seconds,
            "captured": step.graph is not None}
