"""Downloading IDX datasets (netfit.data.download) from a fake mirror on loopback; nothing else is contacted."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from netfit.data import datasets, download, load_builtin
from netfit.errors import NetfitError

FILES = datasets.IDX_FILES


@pytest.fixture
def mirror_dir(tmp_path, write_idx, monkeypatch):
    """A folder with a small, valid mnist set (20 train, 8 test images), its md5s patched into download.MD5."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for part, n in (("train", 20), ("t10k", 8)):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    monkeypatch.setitem(download.MD5, "mnist", {name: _md5(folder / name) for name in FILES})
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """The cache in tmp_path, no NETFIT_DATA_DIR, no system folders, no proxy for loopback."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NETFIT_CACHE_DIR", str(cache))
    monkeypatch.delenv("NETFIT_DATA_DIR", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", ())
    return cache / "mnist"


@pytest.fixture
def server(mirror_dir, monkeypatch):
    """An HTTP server on 127.0.0.1 serving mirror_dir, set as NETFIT_MIRROR; ``server.requests`` logs paths."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):  # keep test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(mirror_dir)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.requests = requests
    monkeypatch.setenv("NETFIT_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_then_load(server, isolated, mirror_dir):
    raw = load_builtin("mnist", download=True)
    assert raw.X_train.shape == (20, 784) and raw.X_test.shape == (8, 784)
    assert sorted(server.requests) == sorted(f"/{name}" for name in FILES)
    for name in FILES:
        assert (isolated / name).read_bytes() == (mirror_dir / name).read_bytes()
    assert sorted(p.name for p in isolated.iterdir()) == sorted(FILES)  # no temporary files left


def test_wrong_checksum_fails_and_keeps_nothing(server, isolated, mirror_dir, monkeypatch):
    actual = _md5(mirror_dir / "t10k-images-idx3-ubyte.gz")
    monkeypatch.setitem(download.MD5["mnist"], "t10k-images-idx3-ubyte.gz", "0" * 32)
    with pytest.raises(NetfitError) as err:
        load_builtin("mnist", download=True)
    message = str(err.value)
    assert "checksum mismatch for t10k-images-idx3-ubyte.gz" in message
    assert f"expected md5 {'0' * 32}, got {actual}" in message
    assert not (isolated / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in isolated.iterdir() if p.name.endswith(".part")]


def test_server_down_gives_the_offline_message(isolated, monkeypatch, mirror_dir):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    httpd.server_close()  # nothing listens on this port any more
    monkeypatch.setenv("NETFIT_MIRROR", f"http://127.0.0.1:{port}/")
    with pytest.raises(NetfitError) as err:
        load_builtin("mnist", download=True)
    message = str(err.value)
    assert "dataset 'mnist' not found" in message and "the download failed" in message
    assert "train-images-idx3-ubyte.gz" in message and str(isolated) in message
    assert "--data-dir DIR" in message and "NETFIT_DATA_DIR" in message and "\n" not in message


def test_mirror_without_the_file_gives_the_offline_message(server, isolated, mirror_dir):
    (mirror_dir / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NetfitError, match=r"not found: .*train-labels-idx1-ubyte.gz.*HTTP 404"):
        load_builtin("mnist", download=True)


def test_file_url_mirror(isolated, mirror_dir, monkeypatch):
    monkeypatch.setenv("NETFIT_MIRROR", mirror_dir.as_uri() + "/")
    raw = load_builtin("mnist", download=True)
    assert len(raw.y_train) == 20 and (isolated / "train-images-idx3-ubyte.gz").is_file()


def test_cached_files_are_not_downloaded_again(server, isolated, mirror_dir):
    isolated.mkdir(parents=True)
    (isolated / "train-images-idx3-ubyte.gz").write_bytes((mirror_dir / "train-images-idx3-ubyte.gz").read_bytes())
    load_builtin("mnist", download=True)
    assert "/train-images-idx3-ubyte.gz" not in server.requests and len(server.requests) == 3
    server.requests.clear()
    load_builtin("mnist", download=True)
    assert server.requests == []


def test_no_download_when_download_is_off(server, isolated):
    with pytest.raises(NetfitError, match="downloading is off"):
        load_builtin("mnist", download=False)
    assert server.requests == []


def test_known_checksums_and_mirrors_cover_every_idx_dataset():
    for name in ("mnist", "fashion-mnist", "kmnist"):
        assert sorted(download.MD5[name]) == sorted(FILES)
        assert all(len(md5) == 32 for md5 in download.MD5[name].values())
        assert download.MIRRORS[name]
