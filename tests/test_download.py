"""Downloads against a real local HTTP server: checksums, mirrors, atomic writes, the cache.

The server (127.0.0.1, port 0) serves the shared MNIST subset under several paths:
  /good/<file>     the real files
  /tampered/<file> the real files with one byte flipped
  /cut/<file>      sends the full Content-Length, then closes the connection half way
  /missing/<file>  404
Nothing here touches the internet: every call passes mirrors= or AELAB_MIRRORS on 127.0.0.1.
"""

import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from aelab.data import FILES, cache_root, download_file, load_dataset
from aelab.data import download as data_download
from aelab.data.registry import DATASETS, Checksum, DatasetSpec
from aelab.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist-subset"
SUBSET_SHA256 = {  # shared/datasets/README.md
    "train-images-idx3-ubyte.gz":
        "a856023f852601af3bf5c4d4c023437baef712e5f2889b2da8489336d2468a6f",
    "train-labels-idx1-ubyte.gz":
        "326219f3c671380c37d64b3808a2e7b3bee1ff45ce6fa2e783b22c6b1e0fece9",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
LABELS = "t10k-labels-idx1-ubyte.gz"  # official file, 4,542 bytes
OFFICIAL = DATASETS.get("mnist").checksums[LABELS]


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files` (name -> bytes) with the behaviours in the module docstring."""

    def do_GET(self):
        self.server.requests.append(self.path)
        _, kind, name = self.path.split("/", 2)
        body = self.server.files.get(name)
        if body is None or kind == "missing":
            self.send_error(404)
            return
        if kind == "tampered":
            body = body[:100] + bytes([body[100] ^ 0x01]) + body[101:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if kind == "trickle":  # a byte every 20 ms, never a gap long enough for a read timeout
            for i in range(len(body)):
                try:
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                except OSError:
                    return  # the client gave up
                time.sleep(0.02)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files = {name: (SHARED / name).read_bytes() for name in FILES}
    srv.requests = []
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """An empty cache in tmp_path; any mirror not given explicitly points at a closed port."""
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AELAB_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.delenv("AELAB_OFFLINE", raising=False)


@pytest.fixture
def subset_registry(monkeypatch):
    """Pretend the shared subset is the official MNIST, so it can pass checksum checks."""
    spec = DatasetSpec(("http://127.0.0.1:9/",),
                            {f: Checksum(sha256=s) for f, s in SUBSET_SHA256.items()})
    monkeypatch.setitem(DATASETS._entries, "mnist", (spec, ""))


def folder_listing(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- download_file


def test_download_file_verifies_official_sha256_and_md5(server, tmp_path):
    dest = tmp_path / "dl" / LABELS
    download_file([f"{server.base}/good/{LABELS}"], dest, sha256=OFFICIAL.sha256, md5=OFFICIAL.md5)
    assert dest.read_bytes() == server.files[LABELS]
    assert folder_listing(dest.parent) == [LABELS]
    assert server.requests == [f"/good/{LABELS}"]


def test_wrong_md5_is_rejected(server, tmp_path):
    dest = tmp_path / LABELS
    with pytest.raises(DataError, match="checksum mismatch"):
        download_file([f"{server.base}/good/{LABELS}"], dest, md5="0" * 32)
    assert not dest.exists()


def test_tampered_file_is_rejected_and_nothing_is_left(server, tmp_path):
    dest = tmp_path / "dl" / LABELS
    with pytest.raises(DataError, match="checksum mismatch"):
        download_file([f"{server.base}/tampered/{LABELS}"], dest, sha256=OFFICIAL.sha256)
    assert folder_listing(dest.parent) == []
    assert len(server.requests) == 1  # a wrong file is not fetched again from the same mirror


@pytest.mark.parametrize("first, tries", [("missing", 1), ("tampered", 1), ("cut", 2)])
def test_bad_first_mirror_then_good_second(server, tmp_path, first, tries):
    """A 404 or a wrong file moves on at once; a broken connection is retried once."""
    dest = tmp_path / "dl" / LABELS
    urls = [f"{server.base}/{first}/{LABELS}", f"{server.base}/good/{LABELS}"]
    download_file(urls, dest, sha256=OFFICIAL.sha256)
    assert dest.read_bytes() == server.files[LABELS]
    assert folder_listing(dest.parent) == [LABELS]
    assert server.requests == [f"/{first}/{LABELS}"] * tries + [f"/good/{LABELS}"]


def test_interrupted_download_leaves_nothing(server, tmp_path):
    """Content-Length promised, connection closed half way: retried, then refused, no files."""
    dest = tmp_path / "dl" / LABELS
    with pytest.raises(DataError, match="closed after 2271 of 4542 bytes"):
        download_file([f"{server.base}/cut/{LABELS}"], dest)  # no checksum: length alone
    assert folder_listing(dest.parent) == []
    assert server.requests == [f"/cut/{LABELS}"] * 2  # two attempts per mirror


def test_a_mirror_that_trickles_bytes_is_given_up_on_by_rate_and_deadline(server, tmp_path, monkeypatch):
    """Each read returns within the timeout, so only an average rate and an overall deadline stop it."""
    dest = tmp_path / "dl" / LABELS
    monkeypatch.setattr(data_download, "GRACE_S", 0.3)
    started = time.monotonic()
    with pytest.raises(DataError, match="too slow"):
        download_file([f"{server.base}/trickle/{LABELS}"], dest, sha256=OFFICIAL.sha256)
    assert time.monotonic() - started < 10  # 4,542 bytes at 50 bytes/s would take 90 s
    monkeypatch.setattr(data_download, "MIN_RATE", 0)
    monkeypatch.setattr(data_download, "DEADLINE_S", 0.5)
    with pytest.raises(DataError, match="gave up after 0.5 s"):
        download_file([f"{server.base}/trickle/{LABELS}"], dest, sha256=OFFICIAL.sha256)
    assert folder_listing(dest.parent) == []


def test_killed_download_leaves_nothing(server, tmp_path, monkeypatch):
    """An exception mid-transfer (Ctrl-C) removes the temp file and never creates dest."""

    class Interrupting:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(data_download, "tqdm", Interrupting)
    dest = tmp_path / "dl" / LABELS
    with pytest.raises(KeyboardInterrupt):
        download_file([f"{server.base}/good/{LABELS}"], dest, sha256=OFFICIAL.sha256)
    assert folder_listing(dest.parent) == []


# ---------------------------------------------------------------- load_dataset


def test_load_downloads_into_cache_then_uses_cache(server, subset_registry):
    lines = []
    d = load_dataset("mnist", mirrors=[f"{server.base}/good/"], progress=False, log=lines.append)
    assert d.source == "download" and d.train_images.shape == (12000, 28, 28)
    assert d.info()["official"] is True
    folder = cache_root() / "mnist"
    assert folder_listing(folder) == sorted(FILES)
    assert sorted(server.requests) == sorted(f"/good/{f}" for f in FILES)
    assert lines == [f"aelab: downloaded mnist into {folder}"]

    again = load_dataset("mnist", mirrors=[f"{server.base}/good/"], log=pytest.fail)
    assert again.source == f"cache {folder}"
    assert len(server.requests) == 4  # the second load did not touch the server


def test_damaged_cache_file_is_fetched_again(server, subset_registry):
    load_dataset("mnist", mirrors=[f"{server.base}/good/"], progress=False, log=lambda _: None)
    cached = cache_root() / "mnist" / LABELS
    cached.write_bytes(cached.read_bytes()[:-1])
    d = load_dataset("mnist", mirrors=[f"{server.base}/good/"], progress=False, log=lambda _: None)
    assert d.source == "download"
    assert server.requests[4:] == [f"/good/{LABELS}"]


def test_aelab_mirrors_env_is_used(server, subset_registry, monkeypatch):
    monkeypatch.setenv("AELAB_MIRRORS", f"http://127.0.0.1:9/, {server.base}/good/")
    d = load_dataset("mnist", progress=False, log=lambda _: None)
    assert d.source == "download" and len(server.requests) == 4


def test_aelab_offline_never_touches_the_network(server, subset_registry, monkeypatch):
    monkeypatch.setenv("AELAB_OFFLINE", "1")
    lines = []
    d = load_dataset("mnist", mirrors=[f"{server.base}/good/"], log=lines.append)
    assert d.source == "bundled subset" and server.requests == []
    assert len(lines) == 1 and "AELAB_OFFLINE" in lines[0]


def test_tampered_mirror_makes_load_fail_without_cache_files(server, subset_registry):
    with pytest.raises(DataError, match="checksum mismatch.*--data-dir"):
        load_dataset("mnist", mirrors=[f"{server.base}/tampered/"], fallback_to_bundled=False,
                     progress=False, log=lambda _: None)
    assert folder_listing(cache_root() / "mnist") == []


def test_unreachable_mirror_fails_with_data_dir_hint(closed_port_url):
    with pytest.raises(DataError) as err:
        load_dataset("kmnist", mirrors=[closed_port_url], progress=False, log=lambda _: None)
    message = str(err.value)
    assert "\n" not in message and "could not be downloaded" in message and "--data-dir DIR" in message
    assert "kmnist" in message and closed_port_url in message  # names the failing mirror


def test_unreachable_mirror_mnist_falls_back_in_one_line(closed_port_url):
    lines = []
    d = load_dataset("mnist", mirrors=[closed_port_url], progress=False, log=lines.append)
    assert d.source == "bundled subset"
    assert len(lines) == 1 and "bundled subset" in lines[0] and "--data-dir" in lines[0]
    assert closed_port_url in lines[0]  # the reason names the failing mirror


def test_progress_bar_only_on_a_terminal(server, subset_registry, capsys):
    load_dataset("mnist", mirrors=[f"{server.base}/good/"], progress=True, log=lambda _: None)
    err = capsys.readouterr().err  # pytest's stderr is not a terminal: no bar
    assert "B/s" not in err and "%|" not in err and LABELS not in err


def test_download_file_shows_progress_when_asked(server, tmp_path, capsys):
    download_file([f"{server.base}/good/{LABELS}"], tmp_path / LABELS, progress=True)
    assert LABELS in capsys.readouterr().err


def test_a_cache_file_larger_than_any_dataset_file_is_not_read(tmp_path, monkeypatch):
    # a 10 GB file planted in the cache was hashed whole, twice, before the fallback (66 s)
    download = data_download
    big = tmp_path / "train-images-idx3-ubyte.gz"
    with open(big, "wb") as f:
        f.truncate(download.MAX_DOWNLOAD_BYTES + 1)  # sparse: no disk used
    monkeypatch.setattr(download, "hexdigests", lambda *a: pytest.fail("a too-large file was read"))
    spec = DATASETS.get("mnist")
    assert not download.matches(big, spec.checksums["train-images-idx3-ubyte.gz"])
