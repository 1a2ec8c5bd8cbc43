"""aelab explore: its JSON API on real 1-epoch runs, its server's start and stop, and the page in Chromium.

The API tests talk real HTTP to the app served on a free localhost port in a thread (urllib as
the client, so no extra test dependency), on an autoencoder, a VAE and a 2-D-code autoencoder.
Every answer that shows an image must equal what `Run.decode` / `Run.reconstruct` give (1e-6).

The browser test drives Debian's /usr/bin/chromium through Playwright (no browser is downloaded);
without chromium it fails, unless AELAB_SKIP_BROWSER=1 says to skip it. It saves a screenshot;
AELAB_UPDATE_FIGURES=1 (or a missing docs/figures/explore.png) copies it there, and
AELAB_EXPLORE_RUN=RUN_DIR points the browser test at (a copy of) an existing run on the same MNIST
files instead of a fresh 1-epoch one: that is how the committed figure shows a trained model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import aelab
from aelab import resolve_config
from aelab.errors import AelabError
from aelab.explore import create_app, serve
from aelab.explore.drawing import center_like_mnist
from aelab.explore.serve import start_background
from aelab.training import train

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"ae": ("seed", {}), "vae": ("vae", {}), "ae2": ("seed", {"latent_dim": 2}),
         "conv": ("seed", {"architecture": "conv", "latent_dim": 16, "output_activation": "sigmoid"}),
         "dense-linear-vae": ("vae", {"architecture": "dense-linear", "latent_dim": 8})}  # every family
CHROMIUM = "/usr/bin/chromium"


def call(url: str, path: str, body=None, raw: bytes | None = None, headers: dict | None = None,
         method: str | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, headers=headers or {},
                                 method=method or ("GET" if data is None else "POST"))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def close(a, b, tol: float = 1e-6) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0)) <= tol


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, small_mnist, mnist_dir) -> dict[str, Path]:
    out = {}
    for kind, (preset, extra) in KINDS.items():
        cfg = resolve_config(preset, {"epochs": 1, "device": "cpu", "data_dir": str(mnist_dir), **extra})
        out[kind] = tmp_path_factory.mktemp(f"explore-{kind}") / "run"
        train(cfg, out[kind], quiet=True, data=small_mnist, log=lambda s: None)
    return out


@pytest.fixture(scope="module", params=list(KINDS))
def explorer(request, run_dirs, small_mnist, mnist):
    """The app serving one run; `data` is what the run trained on, `val` the map's digits."""
    run_dir = run_dirs[request.param]
    url, stop = start_background(create_app(run_dir, log=lambda s: None))
    yield SimpleNamespace(url=url, dir=run_dir, kind=request.param, run=aelab.load_run(run_dir),
                          data=small_mnist, val=mnist)
    stop()


def test_every_endpoint_matches_the_run(explorer):
    url, run, data = explorer.url, explorer.run, explorer.data
    status, info = call(url, "api/info")
    assert status == 200 and info["latent_dim"] == run.latent_dim and info["kind"] == run.config.model.kind
    assert info["samplers"] == (["prior", "gaussian", "gmm"] if explorer.run.config.model.kind == "vae"
                                else ["normal", "gaussian", "gmm"])
    k = len(info["directions"]["vectors"])
    assert k == (2 if explorer.kind == "ae2" else 6) and len(info["gallery"]) == 20
    assert np.allclose(np.linalg.norm(info["directions"]["vectors"], axis=1), 1)

    status, m = call(url, "api/map")
    val = explorer.val.test_images[:2000]
    val_codes = run.encode(val).numpy()
    assert status == 200 and len(m["x"]) == 2000 and m["labels"] == explorer.val.test_labels[:2000].tolist()
    if explorer.kind == "ae2":  # the map is the code space itself
        assert m["method"] == "code" and close(np.stack([m["x"], m["y"]], axis=1), val_codes)
    else:
        assert m["method"] == "pca"

    drawing = data.test_images[7].float().numpy() / 255  # a real digit, as the pad would send it
    train_codes = run.encode(data.train_images).numpy()
    for center in (False, True):
        status, r = call(url, "api/reconstruct", {"image": drawing.tolist(), "center": center})
        assert status == 200
        expected_input = center_like_mnist(drawing) if center else drawing
        assert close(r["input"], expected_input.reshape(-1))
        x = torch.tensor(r["input"], dtype=torch.float32).reshape(1, 28, 28)
        assert close(r["reconstruction"], run.reconstruct(x).reshape(-1))
        assert close(r["code"], run.encode(x)[0])
        dist = np.linalg.norm(train_codes - np.asarray(r["code"], dtype=np.float32), axis=1)
        assert [n["index"] for n in r["neighbours"]][:1] == [int(dist.argmin())]
        assert len(r["neighbour_images"]) == 8

    codes = torch.randn(5, run.latent_dim)
    status, r = call(url, "api/decode", {"codes": codes.tolist()})
    assert status == 200 and close(r["images"], run.decode(codes).reshape(5, -1))

    status, p = call(url, "api/point", {"index": 3})
    assert status == 200 and p["label"] == int(explorer.val.test_labels[3]) and close(p["code"], val_codes[3])
    assert close(p["decoded"], run.decode(torch.tensor([p["code"]]))[0].reshape(-1))
    assert p["image"] == val[3].reshape(-1).tolist()

    a, b = val_codes[0].tolist(), val_codes[1].tolist()
    status, r = call(url, "api/interpolate", {"a": a, "b": b, "steps": 5})
    assert status == 200 and len(r["codes"]) == 5 and close(r["codes"][0], a) and close(r["codes"][-1], b)
    assert close(r["images"], run.decode(torch.tensor(r["codes"])).reshape(5, -1))


def test_samplers_and_fitting(explorer):
    url, run = explorer.url, explorer.run
    first = "prior" if explorer.run.config.model.kind == "vae" else "normal"
    status, s = call(url, "api/samplers")
    assert status == 200 and not s["fitting"]
    assert {r["name"]: r["state"] for r in s["samplers"]} == {first: "ready", "gaussian": "not fitted",
                                                               "gmm": "not fitted"}
    status, r = call(url, "api/samples", {"sampler": first, "n": 6, "seed": 3})
    assert status == 200 and close(r["images"], run.sample(6, sampler=first, seed=3).reshape(6, -1))
    status, r = call(url, "api/samples", {"sampler": "gmm"})
    assert status == 409 and "not fitted" in r["error"]
    assert not (explorer.dir / "samplers" / "gmm.safetensors").exists()  # nothing fitted behind our back

    status, s = call(url, "api/fit", {"samplers": ["gaussian"]})  # the gmm takes minutes on 2 cores
    assert status == 202 and {r["name"]: r["state"] for r in s["samplers"]}["gaussian"] == "fitting"
    deadline = time.monotonic() + 30
    while call(url, "api/samplers")[1]["fitting"] and time.monotonic() < deadline:
        time.sleep(0.1)
    states = {r["name"]: r["state"] for r in call(url, "api/samplers")[1]["samplers"]}
    assert states == {first: "ready", "gaussian": "ready", "gmm": "not fitted"}
    assert (explorer.dir / "samplers" / "gaussian.safetensors").is_file()
    status, r = call(url, "api/samples", {"sampler": "gaussian", "n": 4})
    assert status == 200 and close(r["images"], run.sample(4, sampler="gaussian", seed=0).reshape(4, -1))
    # "ready" means sampling needs no fitting: a file that holds another sampler, or this one with
    # other settings than today's defaults, is not ready (it would be fitted again on request)
    samplers = explorer.dir / "samplers"
    shutil.copy(samplers / "gaussian.safetensors", samplers / "gmm.safetensors")
    try:
        states = {r["name"]: r["state"] for r in call(url, "api/samplers")[1]["samplers"]}
        assert states["gmm"] == "not fitted"
        status, r = call(url, "api/samples", {"sampler": "gmm"})
        assert status == 409 and "not fitted" in r["error"]
    finally:
        (samplers / "gmm.safetensors").unlink()


def test_bad_requests_get_a_clear_4xx(explorer):
    url, d = explorer.url, explorer.run.latent_dim
    wrong = "prior" if explorer.run.config.model.kind != "vae" else "normal"
    cases = [
        ("api/reconstruct", {"image": [0.0] * 784}, 400, "empty"),
        ("api/reconstruct", {"image": [[0.5] * 27] * 28}, 400, "'image'"),
        ("api/reconstruct", {"image": ["a"] * 784}, 400, "numbers"),
        ("api/reconstruct", {"image": [True] * 784}, 400, "numbers"),
        ("api/reconstruct", {"image": [2.0] * 784}, 400, "[0, 1]"),
        ("api/reconstruct", {"image": [0.5] * 784, "center": "yes"}, 400, "true or false"),
        ("api/reconstruct", {}, 400, "784"),
        ("api/decode", {"codes": [[0.1] * (d + 1)]}, 400, f"needs {d} numbers"),
        ("api/decode", {"codes": [0.1] * 3}, 400, "list of numbers"),
        ("api/decode", {"codes": []}, 400, "non-empty"),
        ("api/decode", {"codes": [[0.0] * d] * 65}, 400, "at most 64"),
        ("api/decode", {"codes": [[1e300] * d]}, 400, "finite"),
        ("api/decode", {"codes": [[None] * d]}, 400, "numbers"),
        ("api/decode", {"codes": [[10**400] + [0] * (d - 1)]}, 400, "finite"),
        ("api/reconstruct", {"image": [10**400] + [0.5] * 783}, 400, "'image'"),
        ("api/point", {"index": 10**6}, 400, "integer from 0"),
        ("api/point", {"index": -1}, 400, "integer"),
        ("api/point", {"index": "3"}, 400, "integer"),
        ("api/point", {"index": 1.5}, 400, "integer"),
        ("api/interpolate", {"a": [0.0] * d, "b": [0.0] * d, "steps": 1}, 400, "steps"),
        ("api/interpolate", {"a": [0.0] * d, "steps": 4}, 400, "'b'"),
        ("api/samples", {"sampler": wrong}, 400, "one of"),
        ("api/samples", {"sampler": ["gmm"]}, 400, "one of"),
        ("api/samples", {"sampler": "gaussian", "n": 10**5}, 400, "'n'"),
        ("api/fit", {"samplers": ["../../etc"]}, 400, "samplers"),
    ]
    for path, body, code, text in cases:
        status, r = call(url, path, body)
        assert (status, path) == (code, path) and text in r["error"], (path, body, r)
    def row(token: str) -> bytes:  # one code of the right size holding `token`
        return ('{"codes": [[' + ", ".join([token] + ["0"] * (d - 1)) + "]]}").encode()

    raws = [(b"{", 400, "not valid JSON"), (b"[1, 2]", 400, "JSON object"),
            (row("NaN"), 400, "NaN"), (row("-Infinity"), 400, "Infinity"),
            (row("1e999"), 400, "finite"), (b"[" * 100_000, 400, "nested too deeply"),
            (b"\xff\xfe", 400, "not valid JSON"), (b" " * (300 * 1024), 413, "KiB")]
    for raw, code, text in raws:
        status, r = call(url, "api/decode", raw=raw)
        assert status == code and text in r["error"], (raw[:20], r)
    assert call(url, "api/nothing-here")[0] == 404
    status, r = call(url, "api/decode", method="GET")
    assert status == 405 and r["error"]
    assert call(url, "api/info")[0] == 200  # the server shrugged all of it off


def test_only_local_hosts_when_asked(run_dirs):
    url, stop = start_background(create_app(run_dirs["ae2"], allowed_hosts=["127.0.0.1", "localhost"],
                                            log=lambda s: None))
    try:
        assert call(url, "api/info")[0] == 200
        req = urllib.request.Request(url + "api/info", headers={"Host": "evil.example:80"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400
    finally:
        stop()


def test_a_run_folder_that_goes_away_or_changes(run_dirs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run_dirs["ae2"], run_dir, ignore=shutil.ignore_patterns("samplers"))
    url, stop = start_background(create_app(run_dir, log=lambda s: None))
    try:
        moved = tmp_path / "moved"
        run_dir.rename(moved)
        status, r = call(url, "api/decode", {"codes": [[0.0, 0.0]]})
        assert status == 410 and "is gone" in r["error"]
        assert call(url, "api/fit", {})[0] == 410 and call(url, "api/info")[0] == 410
        moved.rename(run_dir)
        assert call(url, "api/decode", {"codes": [[0.0, 0.0]]})[0] == 200
        st = (run_dir / "model.safetensors").stat()
        os.utime(run_dir / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # retrained
        status, r = call(url, "api/decode", {"codes": [[0.0, 0.0]]})
        assert status == 409 and "restart" in r["error"]
        with urllib.request.urlopen(url, timeout=10) as page:  # the page itself still loads
            assert page.status == 200 and b"aelab explore" in page.read()
    finally:
        stop()


def test_serve_refuses_clearly_and_stops_on_ctrl_c(run_dirs, tmp_path, monkeypatch):
    with pytest.raises(AelabError, match="no run folder"):
        serve(tmp_path / "missing", port=0, log=lambda s: None)
    url, stop = start_background(create_app(run_dirs["ae2"], log=lambda s: None))
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(AelabError, match=f"port {port} on 127.0.0.1 is already in use"):
            serve(run_dirs["ae2"], port=port, log=lambda s: None)
    finally:
        stop()
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(AelabError, match=re.escape("[explore]'")):
        create_app(run_dirs["ae2"])
    monkeypatch.undo()

    code = "import sys; from aelab.explore import serve; serve(sys.argv[1], port=0)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dirs["ae2"])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line + proc.stderr.read()
        with urllib.request.urlopen(found.group(0), timeout=20) as page:
            assert page.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err and out == "", (out, err)


IDLE = "window.aelab.busy === 0 && window.aelab.pending === 0"


def _wait(page, expr: str, timeout: float = 30_000):
    """Wait until `expr` holds in the page, then return its value (a function: the CSP forbids eval)."""
    page.wait_for_function(f"() => {expr}", timeout=timeout)
    return page.evaluate(f"() => {expr}")


def _decoded(run, codes) -> torch.Tensor:
    return run.decode(torch.tensor(codes, dtype=torch.float32)).reshape(len(codes), -1)


def _check_drawing(page, run) -> None:
    """A tap, Clear, then a stroke like a 7 drawn with the mouse: the page's reconstruction is the run's."""
    box = page.locator("#pad").bounding_box()
    page.touchscreen.tap(box["x"] + 140, box["y"] + 140)  # a finger leaves a dot
    tapped = _wait(page, f"{IDLE} && window.aelab.draw.input && window.aelab.draw")
    assert max(tapped["pad"]) > 0.5 and tapped["count"] >= 1
    page.click("#clear")
    _wait(page, f"{IDLE} && window.aelab.draw.input === null")
    assert "empty" in page.text_content("#draw-status")
    page.mouse.move(box["x"] + 70, box["y"] + 60)
    page.mouse.down()
    for x, y in [(130, 60), (200, 60), (185, 110), (160, 170), (140, 230)]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
    page.mouse.up()
    draw = _wait(page, f"{IDLE} && window.aelab.draw.reconstruction && window.aelab.draw")
    pad = np.asarray(draw["pad"], dtype=np.float32).reshape(28, 28)
    assert draw["center"] and pad.max() > 0.5
    assert close(draw["input"], center_like_mnist(pad).reshape(-1))
    drawn = torch.tensor(draw["input"], dtype=torch.float32).reshape(1, 28, 28)  # what the page sent
    expected = run.reconstruct(drawn).reshape(-1)
    assert close(draw["reconstruction"], expected)
    shown = page.evaluate("() => Array.from(document.getElementById('draw-output').getContext('2d')"
                          ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))")
    assert shown == np.floor(expected.numpy() * 255 + 0.5).astype(int).tolist()  # exact uint8 rounding


def _check_slider(page, run) -> None:
    """The first slider moved by keyboard: the code moves along PC 1 and the decoded image changes."""
    before = page.evaluate("() => window.aelab.slider")
    page.focus("#slider-0")
    for _ in range(30):
        page.keyboard.press("ArrowRight")
    slider = _wait(page, f"{IDLE} && window.aelab.slider.values[0] > 1.4 && "
                         f"window.aelab.slider.count > {before['count']} && window.aelab.slider")
    assert not close(slider["decoded"], before["decoded"], 1e-3)
    dirs = page.evaluate("() => window.aelab.info.directions")
    step = slider["values"][0] * dirs["scales"][0] * np.asarray(dirs["vectors"][0])
    want = np.asarray(before["code"]) + step
    assert close(slider["code"], want, 1e-9)
    assert close(slider["decoded"], _decoded(run, [slider["code"]])[0])


def _check_map(page, run, val_codes: np.ndarray) -> dict:
    """A click on a map point decodes that validation digit's code and picks the digit."""
    n = page.evaluate("() => window.aelab.map.count")
    cx, cy = page.evaluate("() => window.aelab.mapPoint(42)")
    page.mouse.click(cx, cy)
    last = _wait(page, f"{IDLE} && window.aelab.map.count > {n} && window.aelab.map.last.index !== null && "
                       f"window.aelab.picked.index === window.aelab.map.last.index && window.aelab.map.last")
    assert close(last["code"], val_codes[last["index"]], 1e-5)
    assert close(last["decoded"], _decoded(run, [last["code"]])[0])
    return last


def _check_interpolation(page, run, picked: dict) -> None:
    page.click("#set-b")
    interp = _wait(page, f"{IDLE} && window.aelab.interp.b.index === {picked['index']}"
                         f" && window.aelab.interp.count > 1 && window.aelab.interp")
    assert close(interp["codes"][-1], picked["code"])
    assert close(interp["images"], _decoded(run, interp["codes"]))


def _check_keyboard_and_phone(page) -> None:
    """A gallery digit picked from the keyboard alone (Tab onto it, Enter), then the page at a
    phone's 375 px: nothing wider than the screen, so nothing needs sideways scrolling."""
    gallery = page.evaluate("() => window.aelab.info.gallery")
    page.focus("#random-digit")
    for _ in range(3):  # backwards from the button after the gallery: its last three digits
        page.keyboard.press("Shift+Tab")
    focused = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    want = gallery[-3]
    assert focused == f"a {want['label']}, validation digit {want['index']}"
    page.keyboard.press("Enter")
    _wait(page, f"{IDLE} && window.aelab.picked.index === {want['index']}")
    page.set_viewport_size({"width": 375, "height": 812})
    page.wait_for_timeout(100)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, "
                           "document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    page.set_viewport_size({"width": 1400, "height": 1000})


def _check_fitting(page, run) -> None:
    """The fit button (asked to fit only the gaussian: a gmm takes minutes here) then its samples."""
    page.route("**/api/fit", lambda route: route.continue_(post_data='{"samplers": ["gaussian"]}'))
    with page.expect_response("**/api/fit") as fit:
        page.click("#fit")
    assert fit.value.status == 202 and '"fitting"' in fit.value.text()
    samples = _wait(page, f"{IDLE} && window.aelab.samples.gaussian")
    assert page.evaluate("() => window.aelab.sawFitting")  # the page showed "fitting..." meanwhile
    assert page.text_content("#sampler-gaussian .state") == "ready"
    assert page.text_content("#sampler-gmm .state") == "not fitted"
    assert close(samples["images"], run.sample(16, sampler="gaussian", seed=0).reshape(16, -1))


@pytest.mark.slow
def test_browser_draw_slide_map_interpolate_sample(run_dirs, mnist, tmp_path):
    if os.environ.get("AELAB_SKIP_BROWSER") == "1":
        pytest.skip("AELAB_SKIP_BROWSER=1")
    from playwright.sync_api import sync_playwright

    given = os.environ.get("AELAB_EXPLORE_RUN")  # a copy: the test moves the folder away at the end
    run_dir = tmp_path / (Path(given).name if given else "run")
    shutil.copytree(given or run_dirs["ae"], run_dir,
                    ignore=None if given else shutil.ignore_patterns("samplers"))
    run = aelab.load_run(run_dir)
    url, stop = start_background(create_app(run_dir, log=lambda s: None))
    requests, problems, shot = [], [], tmp_path / "explore.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, has_touch=True)
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
            page.on("pageerror", lambda e: problems.append(f"page error {e}"))
            page.on("console", lambda m: m.type == "error" and problems.append(f"console {m.text}"))
            page.goto(url)
            _wait(page, f"window.aelab.ready && {IDLE} && window.aelab.slider.count > 0")
            _check_drawing(page, run)
            _check_slider(page, run)
            picked = _check_map(page, run, run.encode(mnist.test_images[:2000]).numpy())
            _check_interpolation(page, run, picked)
            _check_keyboard_and_phone(page)
            if not (run_dir / "samplers" / "gaussian.safetensors").exists():
                _check_fitting(page, run)
            page.wait_for_timeout(300)
            page.screenshot(path=str(shot), full_page=True)

            run_dir.rename(run_dir.with_name("gone"))  # the page says so in one line
            try:
                page.focus("#slider-0")
                page.keyboard.press("ArrowLeft")
                _wait(page, "!document.getElementById('message').hidden")
                assert "is gone" in page.text_content("#message")
            finally:
                run_dir.with_name("gone").rename(run_dir)
            browser.close()
    finally:
        stop()
    assert shot.stat().st_size > 10_000
    figure = ROOT / "docs" / "figures" / "explore.png"
    if os.environ.get("AELAB_UPDATE_FIGURES") == "1" or not figure.exists():
        shutil.copyfile(shot, figure)
    elsewhere = [r for r in requests if not r.startswith(url)]
    assert requests and elsewhere == []
    assert [p for p in problems if "410" not in p] == []  # the 410 above logs one console error
