"""The web app: one static page, its script and style, and JSON endpoints over `backend`/`fitting`.

Every API answer is JSON; every refusal is a 4xx `{"error": "one clear line"}`. Request bodies
are capped (`validate.MAX_BODY_BYTES`) while they are read, the model runs in a worker thread so
the server keeps answering while it computes, and the page may load nothing but what this app
serves (a Content-Security-Policy says so to the browser). No route takes a path from the client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import backend, fitting, validate
from .validate import RequestError

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/static/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
         "/static/explore.css": ("explore.css", "text/css; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

GET_ROUTES = {"/api/info": backend.info, "/api/map": backend.map_points,
              "/api/samplers": fitting.sampler_status}
POST_ROUTES = {"/api/reconstruct": backend.reconstruct, "/api/decode": backend.decode,
               "/api/point": backend.point, "/api/interpolate": backend.interpolate,
               "/api/samples": fitting.samples, "/api/fit": fitting.start_fit}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=HEADERS)


async def _read_body(request: Request) -> dict:
    """The request's JSON object, refusing a body over the cap before reading all of it."""
    limit = validate.MAX_BODY_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body over {limit // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"request body over {limit // 1024} KiB")
    return validate.parse_body(bytes(body))


def _endpoint(state: backend.State, fn: Callable[[backend.State, dict], dict], post: bool,
              log: Callable[[str], None]):
    async def handler(request: Request) -> Response:
        try:
            body = await _read_body(request) if post else {}
            backend.check_run(state)
            result = await run_in_threadpool(fn, state, body)
        except RequestError as e:
            return _error(e.status, e.message)
        except backend.AelabError as e:  # e.g. a sampler file in the run folder turned corrupt
            return _error(409, str(e))
        except Exception as e:  # noqa: BLE001 - a bug must answer 500, not take the server down
            log(f"aelab explore: internal error in {request.url.path}: {type(e).__name__}: {e}")
            return _error(500, f"internal error ({type(e).__name__}); see the server's console")
        return JSONResponse(result, status_code=202 if fn is fitting.start_fit else 200, headers=HEADERS)

    return handler


def _static(name: str, media_type: str):
    async def handler(request: Request) -> Response:
        try:
            content = (STATIC / name).read_bytes()
        except OSError:
            return _error(500, f"the page's file {name} is missing from the aelab install")
        return Response(content, media_type=media_type, headers=HEADERS)

    return handler


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, str(exc.detail))


def create_app(run_dir: str | Path, allowed_hosts: list[str] | None = None,
               log: Callable[[str], None] = print) -> FastAPI:
    """The app for one run folder; raises `AelabError` if the folder (or its data) is unusable.

    `allowed_hosts` (e.g. ["127.0.0.1", "localhost"]) refuses other Host headers, so a web page
    elsewhere cannot reach a server on localhost through DNS rebinding.
    """
    state = backend.load_state(run_dir, log=log)
    app = FastAPI(title="aelab explore", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explore = state
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_exception_handler(HTTPException, _http_error)
    for path, (name, media_type) in FILES.items():
        app.add_route(path, _static(name, media_type), methods=["GET"])
    for path, fn in GET_ROUTES.items():
        app.add_route(path, _endpoint(state, fn, False, log), methods=["GET"])
    for path, fn in POST_ROUTES.items():
        app.add_route(path, _endpoint(state, fn, True, log), methods=["POST"])
    return app
