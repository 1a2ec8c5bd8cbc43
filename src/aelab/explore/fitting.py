"""The samplers panel: which of the run's samplers are ready, samples from them, fitting the others.

A sampler is ready when it needs no fitting (`normal` for an autoencoder, `prior` for a VAE) or
its fitted file in RUN_DIR/samplers/ holds it with today's settings (`saved_is_current`; a file
fitted under older defaults would be fitted again on the first request). Fitting (the gmm takes
~30 s on a seed run) runs in one background thread through `Run.sample`, which fits and saves
exactly as `aelab sample` does; the page polls `sampler_status` and shows "fitting..." meanwhile.
"""

from __future__ import annotations

import threading

from aelab.samplers import RECOMMENDED
from aelab.samplers.fitting import saved_is_current

from . import validate
from .backend import AelabError, State, check_run
from .validate import RequestError

NO_FIT = ("normal", "prior")
MAX_SAMPLES = 64
_lock = threading.Lock()


def _state_of(state: State, name: str) -> tuple[str, str]:
    status = state.fit.get(name, "")
    if status == "fitting":
        return "fitting", ""
    if name in NO_FIT or saved_is_current(state.run, name):
        return "ready", ""
    if status.startswith("error: "):
        return "error", status[len("error: "):]
    return "not fitted", ""


def sampler_status(state: State, body: dict | None = None) -> dict:
    rows = []
    for name in state.samplers:
        s, message = _state_of(state, name)
        rows.append({"name": name, "state": s, "message": message, "recommended": name == RECOMMENDED})
    fitting = state.fit_thread is not None and state.fit_thread.is_alive()
    return {"samplers": rows, "fitting": fitting}


def samples(state: State, body: dict) -> dict:
    """`n` images from a ready sampler, as `Run.sample(n, sampler, seed)` gives them."""
    name = validate.choice(body, "sampler", state.samplers)
    n = validate.integer(body, "n", 16, 1, MAX_SAMPLES)
    seed = validate.integer(body, "seed", 0, 0, 2**31 - 1)
    s, message = _state_of(state, name)
    if s == "fitting":
        raise RequestError(409, f"the {name} sampler is still being fitted; try again when it is ready")
    if s != "ready":
        raise RequestError(409, f"the {name} sampler is not fitted yet: press 'Fit the other samplers'"
                           + (f" (last try failed: {message})" if message else ""))
    try:
        images = state.run.sample(n, sampler=name, seed=seed)
    except AelabError as e:
        raise RequestError(409, f"sampler {name}: {e}") from None
    return {"sampler": name, "seed": seed, "images": images.reshape(n, -1).double().tolist()}


def _fit_all(state: State, names: list[str]) -> None:
    for name in names:
        try:
            check_run(state)
            state.run.sample(1, sampler=name, seed=0)  # fits and saves RUN_DIR/samplers/<name>
            if saved_is_current(state.run, name):
                state.fit.pop(name, None)
            else:
                state.fit[name] = f"error: could not save the fitted sampler into {state.path / 'samplers'}"
        except RequestError as e:
            state.fit[name] = f"error: {e.message}"
        except AelabError as e:
            state.fit[name] = f"error: {e}"
        except Exception as e:  # noqa: BLE001 - a failed fit must show in the page, not kill the thread
            state.fit[name] = f"error: {type(e).__name__}: {e}"


def start_fit(state: State, body: dict) -> dict:
    """Fit the samplers named in `samplers` (default: every one not ready) in the background."""
    wanted = body.get("samplers")
    if wanted is None:
        wanted = [n for n in state.samplers if _state_of(state, n)[0] in ("not fitted", "error")]
    elif not isinstance(wanted, list) or any(n not in state.samplers or not isinstance(n, str)
                                             for n in wanted):
        raise RequestError(400, f"'samplers' must be a list drawn from {', '.join(state.samplers)}")
    with _lock:
        busy = state.fit_thread is not None and state.fit_thread.is_alive()
        todo = [n for n in dict.fromkeys(wanted) if n not in NO_FIT and _state_of(state, n)[0] != "ready"]
        if todo and not busy:
            for name in todo:
                state.fit[name] = "fitting"
            state.fit_thread = threading.Thread(target=_fit_all, args=(state, todo), daemon=True,
                                                name="aelab-explore-fit")
            state.fit_thread.start()
    return sampler_status(state)
