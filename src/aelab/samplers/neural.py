"""What the neural samplers (flow, diffusion, two-stage) share: a network fitted on whitened
principal components of the codes, a held-out split for early stopping, and a file of numbers.

    class FlowSampler(NeuralSampler):
        def _build(self, k): ...              # the network for k whitened components
        def _loss(self, net, u, gen): ...     # mean loss of a batch u (b, k) float32
        def _generate(self, net, rng, n): ... # n whitened draws (n, k), noise from rng only

The codes the network sees. Constant ("dead") dims are left out and put back exactly
(`base.standardize_active`). The other dims are centred and rotated onto their principal axes;
the leading axes that hold `keep_variance` of the variance are scaled to unit variance (so the
network sees standardized, decorrelated codes) and modelled by the network, and the few
remaining directions get independent Gaussian noise with their own variance. The principal axes
come from the codes' covariance, not from per-dim standardized codes, because of the VAE (one-off
measurements on the shared subset's `vae` run): 14 of its 128 code dims carry 99.8% of the
variance and the other 114 are posterior-collapsed, with means of std ~0.025 that its decoder
ignores; standardizing each dim turns them into 114 unit noise dims that swamp the 14 (a
two-stage VAE fitted that way scored FID 108, no better than the prior). For the seed
autoencoder, whose pre-ReLU code dims have std 0.85-1.08 (BatchNorm), both give the same axes:
64 of them hold 99.5% of the variance.

Fitting holds out `valid_share` of the codes (a seeded split), trains with Adam and a cosine
learning rate, evaluates the held-out loss after every epoch and keeps the weights of the best
epoch; it stops after `patience` epochs without a better one. A tqdm bar on stderr shows the
epoch and both losses.

Saved state: ``active_dims_`` (int64), ``mean_`` (float64, per code dim), ``components_`` and
``variances_`` (float64: the principal axes (a, a) of the active dims, rows in order of falling
variance, and their variances (a,)) and ``network_`` (float32, every parameter in
``parameters()`` order). The network is rebuilt from the constructor arguments and the number
of kept axes, so the file holds numbers only. Sampling draws all its noise from
``np.random.default_rng(seed)``, never from torch's global generator, so a reloaded sampler draws
bit-identical codes.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from aelab.errors import AelabError, RunError

from .base import Sampler, axes_holding, principal_axes, standardize_active

__all__ = ["NeuralSampler", "check_positive"]


MAX_WIDTH = 16384  # a network's hidden width, at most: a file's settings are checked against these
MAX_LAYERS = 64    # its layers, blocks or transforms


def check_positive(name, value, kind=int, most=None):
    """Raise AelabError naming `name` unless `value` is a positive `kind` (bools are not ints), and
    at most `most` when given."""
    ok = isinstance(value, (int, np.integer) if kind is int else (int, float, np.number))
    if not ok or isinstance(value, bool) or value <= 0:
        raise AelabError(f"{name}={value!r} must be a positive {'integer' if kind is int else 'number'}")
    if most is not None and value > most:
        raise AelabError(f"{name}={value!r} must be at most {most:,}")


class NeuralSampler(Sampler):
    """Fit a torch network on whitened principal components of the codes.

    Subclasses set `_build`, `_loss` and `_generate`.

    Parameters
    ----------
    max_epochs, batch_size, lr : int, int, float
        Adam's budget, batch and initial learning rate (cosine-annealed over `max_epochs`).
    valid_share : float
        Share of the codes held out for early stopping, in (0, 1).
    patience : int
        Epochs without a better held-out loss before fitting stops.
    keep_variance : float
        Share of the codes' variance whose principal axes the network models, in (0, 1]; the
        remaining axes get independent Gaussian noise of their own variance.
    random_state : int
        Seeds the network's initialisation, the held-out split, the batches and training noise.
    clip : {"observed", "none"}
    """

    _state = ("active_dims_", "mean_", "components_", "variances_", "network_")
    _width, _layers = "hidden", "depth"  # the constructor arguments `_network_size` varies
    _whiten_kept = True  # scale each kept component to unit variance (see `_kept_scale`)

    def __init__(self, clip="none", random_state=0, max_epochs=100, batch_size=256, lr=1e-3,
                 valid_share=0.1, patience=10, keep_variance=0.995):
        super().__init__(clip=clip)
        if not (isinstance(keep_variance, (int, float)) and 0 < keep_variance <= 1):
            raise AelabError(f"keep_variance={keep_variance!r} must be in (0, 1]")
        self.keep_variance = keep_variance
        for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size), ("patience", patience)):
            check_positive(name, value)
        check_positive("lr", lr, float)
        if not 0 < valid_share < 1:
            raise AelabError(f"valid_share={valid_share!r} must be between 0 and 1")
        self.random_state, self.max_epochs, self.batch_size = random_state, max_epochs, batch_size
        self.lr, self.valid_share, self.patience = lr, valid_share, patience

    # --- what a subclass defines -------------------------------------------------------------
    def _build(self, k):
        """The untrained network (an nn.Module) for `k` whitened components."""
        raise NotImplementedError

    def _loss(self, net, u, gen):
        """Mean training loss of a batch u (b, k) float32; `gen` seeds any noise it draws."""
        raise NotImplementedError

    def _generate(self, net, rng, n):
        """n whitened draws (n, k) float64, all randomness from the numpy Generator `rng`."""
        raise NotImplementedError

    def _start_epoch(self, epoch):
        """Called before each training epoch (1, 2, ...), e.g. for a warm-up."""

    # --- fitting --------------------------------------------------------------------------------
    def _fit(self, codes):
        active, mean, _, _ = standardize_active(codes)
        x = codes[:, active] - mean[active]                      # (n, a), centred
        self.active_dims_, self.mean_ = active, mean
        self.variances_, self.components_ = principal_axes(x)
        self.history_ = []
        self._net, self.network_ = None, np.zeros(0, np.float32)
        if len(active):  # else every dim is constant and there is nothing to learn
            net = self._fresh_network(self.n_kept_)
            self._train(net, torch.from_numpy(self._whiten(x).astype(np.float32)))
            self._net, self.network_ = net.eval(), _to_vector(net)

    @property
    def n_kept_(self):
        """How many principal axes the network models: the fewest that hold `keep_variance`."""
        return axes_holding(self.variances_, self.keep_variance)

    def _kept_scale(self):
        """(k,) what the kept components are divided by: their std, or with ``_whiten = False``
        one std for all (the root of their mean variance), which keeps their variance ratios."""
        v = self.variances_[:self.n_kept_]
        return np.sqrt(v) if self._whiten_kept else np.full(len(v), np.sqrt(v.mean()))

    def _whiten(self, x):
        """Centred codes (n, a) -> the kept components, scaled by `_kept_scale` (n, k)."""
        return x @ self.components_[:self.n_kept_].T / self._kept_scale()

    def _fresh_network(self, a):
        """`_build(a)` with torch's generator seeded by `random_state` (and left as it was)."""
        with torch.random.fork_rng():
            torch.manual_seed(self.random_state)
            return self._build(a)

    def _network_size(self, a):
        """How many numbers `_build(a)` holds, without building it (a loaded file's settings may
        ask for terabytes). Every network here holds a number of parameters that is affine in its
        layer count and quadratic in its width, so six builds at widths 1-3 and 1-2 layers give it
        exactly (Lagrange interpolation through widths 1, 2, 3)."""
        def count(width, layers):
            small = copy.copy(self)
            setattr(small, self._width, width)
            setattr(small, self._layers, layers)
            return sum(p.numel() for p in small._fresh_network(a).parameters())  # RNG left as it was

        h, d = getattr(self, self._width), getattr(self, self._layers)
        at_width = [count(w, 1) + (d - 1) * (count(w, 2) - count(w, 1)) for w in (1, 2, 3)]
        return (at_width[0] * (h - 2) * (h - 3) // 2 - at_width[1] * (h - 1) * (h - 3)
                + at_width[2] * (h - 1) * (h - 2) // 2)

    def _train(self, net, z):
        """Adam with a cosine learning rate; the best held-out epoch's weights (or their moving
        average, for a subclass with an ``ema`` decay) end in `net`."""
        order = np.random.default_rng(self.random_state).permutation(len(z))
        n_valid = min(max(1, round(self.valid_share * len(z))), len(z) - 1)
        valid, train = z[order[:n_valid]], z[order[n_valid:]]
        gen = torch.Generator().manual_seed(self.random_state)
        steps_per_epoch = math.ceil(len(train) / self.batch_size)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.max_epochs * steps_per_epoch)
        decay = getattr(self, "ema", 0.0)  # a moving average of the weights is what is kept
        kept = copy.deepcopy(net) if decay else net
        best, best_state, waited = math.inf, None, 0
        started = time.perf_counter()
        bar = tqdm(range(1, self.max_epochs + 1), desc=f"fitting {self.name} on {len(train)} codes",
                   unit="epoch", leave=False, mininterval=1.0, disable=None)  # None: on a terminal only
        for epoch in bar:
            net.train()
            self._start_epoch(epoch)
            total = 0.0
            for idx in torch.randperm(len(train), generator=gen).split(self.batch_size):
                loss = self._loss(net, train[idx], gen)
                if not torch.isfinite(loss):
                    raise AelabError(f"{self.name} sampler: the training loss became {loss.item()} at "
                                     f"epoch {epoch}; lower lr={self.lr!r}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if decay:
                    with torch.no_grad():
                        for p_kept, p in zip(kept.parameters(), net.parameters()):
                            p_kept.lerp_(p, 1 - decay)
                total += loss.item() * len(idx)
            held_out = self._held_out_loss(kept, valid)
            self.history_.append({"epoch": epoch, "train_loss": total / len(train), "valid_loss": held_out})
            bar.set_postfix(train=f"{total / len(train):.3f}", held_out=f"{held_out:.3f}", refresh=False)
            if held_out < best:
                best, best_state, waited = held_out, {k: v.clone() for k, v in kept.state_dict().items()}, 0
            else:
                waited += 1
                if waited >= self.patience:
                    break
        bar.close()
        net.load_state_dict(best_state)
        self.best_epoch_ = min(self.history_, key=lambda h: h["valid_loss"])["epoch"]
        self.fit_seconds_ = time.perf_counter() - started

    @torch.no_grad()
    def _held_out_loss(self, net, valid):
        """Mean loss on the held-out codes, with noise from a fixed seed so epochs compare."""
        net.eval()
        gen = torch.Generator().manual_seed(self.random_state + 1)
        parts = [self._loss(net, valid[i:i + 4096], gen).item() * len(valid[i:i + 4096])
                 for i in range(0, len(valid), 4096)]
        return sum(parts) / len(valid)

    # --- sampling and loading --------------------------------------------------------------------
    @torch.no_grad()
    def _draw(self, n, rng):
        a, k = self.active_dims_, self.n_kept_
        out = np.tile(self.mean_, (n, 1))
        if len(a):
            kept = self._generate(self._network(), rng, n) * self._kept_scale()   # (n, k)
            rest = rng.standard_normal((n, len(a) - k)) * np.sqrt(self.variances_[k:])  # (n, a - k)
            out[:, a] += np.concatenate([kept, rest], axis=1) @ self.components_
        return out

    def _network(self):
        """The network, rebuilt from ``network_`` after a load (checked first)."""
        if getattr(self, "_net", None) is None:
            self._check_loaded(None)
            net = self._fresh_network(self.n_kept_)
            _from_vector(net, self.network_)
            self._net = net.eval()
        return self._net

    def _set_state(self, arrays):
        super()._set_state(arrays)
        self._net = None

    def _check_loaded(self, path):
        """Raise RunError, naming the file and the array, when loaded arrays do not fit the config."""
        where = path if path is not None else "the loaded sampler file"
        d, a = self.n_features_in_, np.asarray(self.active_dims_)
        n_a = len(a)
        for name, dtype, shape in (("mean_", np.float64, (d,)), ("active_dims_", np.int64, (n_a,)),
                                   ("components_", np.float64, (n_a, n_a)),
                                   ("variances_", np.float64, (n_a,)), ("network_", np.float32, None)):
            arr = np.asarray(getattr(self, name))
            if arr.dtype != dtype or (shape and arr.shape != shape) or (not shape and arr.ndim != 1):
                raise RunError(f"{where}: {name} has dtype {arr.dtype} and shape {arr.shape}, expected "
                               f"{np.dtype(dtype)} and {shape or '(p,)'}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise RunError(f"{where}: {name} holds NaN or inf")
        if n_a and (a.min() < 0 or a.max() >= d or len(np.unique(a)) != n_a):
            raise RunError(f"{where}: active_dims_ are not distinct dims below latent_dim={d}")
        if (self.variances_ < 0).any():
            raise RunError(f"{where}: variances_ holds a negative variance")
        expected = self._network_size(self.n_kept_) if n_a else 0
        if len(self.network_) != expected:
            raise RunError(f"{where}: network_ holds {len(self.network_)} numbers, but the {self.name} "
                           f"network of {self.get_config()} for {self.n_kept_} components has {expected}")


def _to_vector(net):
    """Every parameter of `net`, in `named_parameters` order, as one float32 array."""
    params = [p.detach().reshape(-1) for p in net.parameters()]
    return torch.cat(params).numpy().astype(np.float32) if params else np.zeros(0, np.float32)


def _from_vector(net, vector):
    """Copy a vector made by `_to_vector` back into `net`'s parameters."""
    vector = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
    torch.nn.utils.vector_to_parameters(vector, list(net.parameters()))
