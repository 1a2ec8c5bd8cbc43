"""Starting and stopping the server: bind the port ourselves, print the URL, run uvicorn, stop on Ctrl-C.

The socket is bound before uvicorn starts so a taken port is one clear `AelabError` (uvicorn itself
would log and `sys.exit`). `serve` blocks until Ctrl-C and then returns; `start_background` runs
the same server in a thread for tests and benchmarks and hands back its URL and a stop function.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aelab.extras import install_hint

from .backend import AelabError

MISSING = "aelab explore needs fastapi and uvicorn: "


def require_server() -> Any:
    """The uvicorn module, or `AelabError` saying how to install what is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise AelabError(MISSING + install_hint("explore")) from None
    return uvicorn


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0: any free one); `AelabError` if that cannot be."""
    if type(port) is not int or not 0 <= port <= 65535:
        raise AelabError(f"--port must be a number from 0 to 65535, not {port!r}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise AelabError(f"--host {host}: not an address of this machine") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not over a live listener
        sock.bind(address)
        sock.listen(128)  # connections made right after the URL is printed wait for uvicorn
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise AelabError(f"port {port} on {host} is already in use; pick another with --port") from None
        raise AelabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers accepted when bound to the loopback (DNS-rebinding guard); None: any."""
    if host == "localhost" or host.startswith("127."):
        return sorted({host, "127.0.0.1", "localhost"})
    return None


def _server(app: Any) -> Any:
    uvicorn = require_server()
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False,
          log: Callable[[str], None] = print) -> None:
    """Serve the explorer of `run_dir` on host:port until Ctrl-C; prints one line with the URL."""
    require_server()
    from .app import create_app

    sock = bind(host, port)
    try:
        app = create_app(run_dir, allowed_hosts=allowed_hosts(host), log=_stderr)
        url = url_of(sock)
        log(f"aelab explore: {url}  ({Path(run_dir)}; Ctrl-C stops)")
        if allowed_hosts(host) is None and host not in ("::1", "[::1]"):
            _stderr(f"aelab explore: warning: listening on {host}, so anyone who can reach this machine "
                    f"can use the page (it has no login)")
        if open_browser:
            threading.Timer(0.5, webbrowser.open, args=(url,)).start()
        _server(app).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has shut down gracefully and re-raised the Ctrl-C
    finally:
        sock.close()


def start_background(app: Any, host: str = "127.0.0.1", port: int = 0,
                     timeout: float = 20.0) -> tuple[str, Callable[[], None]]:
    """Run `app` in a daemon thread; returns its URL (once it answers) and a function that stops it."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="aelab-explore-server")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise AelabError(f"the explore server did not start on {host}:{port}")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout)
        sock.close()

    return url_of(sock), stop
