"""`aelab explore RUN_DIR`: a run's latent space in the browser, served from localhost.

    from aelab.explore import serve, create_app
    serve("runs/seed")                 # prints the URL, blocks until Ctrl-C
    app = create_app("runs/seed")      # the FastAPI app itself (tests, other servers)

Panels: a drawing pad (reconstruction, code, nearest training digits), sliders along the code's
principal directions, a map of validation codes, interpolation between two digits, and samples
from each sampler of the run. Needs the `explore` extra (fastapi, uvicorn); importing this
package needs neither, only calling `create_app` / `serve` does. See docs/explore.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["create_app", "serve"]


def create_app(run_dir: str | Path, **kwargs: Any) -> Any:
    """The FastAPI app for `run_dir`; `AelabError` on a bad folder or without fastapi/uvicorn."""
    from .serve import require_server

    require_server()
    from .app import create_app as _create_app

    return _create_app(run_dir, **kwargs)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False,
          log: Callable[[str], None] = print) -> None:
    """Serve the explorer for `run_dir` on http://host:port/ until Ctrl-C (then return)."""
    from .serve import serve as _serve

    _serve(run_dir, host=host, port=port, open_browser=open_browser, log=log)
