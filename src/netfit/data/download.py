"""Downloading the IDX files of mnist, fashion-mnist and kmnist from their mirrors, md5-checked.

A file is streamed into a temporary file next to its final place, hashed while it streams, and
moved into place with ``os.replace`` only when its md5 matches; so an interrupted or corrupted
download never leaves a file under the final name that a later run would trust.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from ..errors import NetfitError
from ..progress import bar
from ..storage import atomic_file

__all__ = ["MIRRORS", "MD5", "TIMEOUT_S", "MirrorsUnreachable", "mirrors_for", "download_files", "download_file"]

# Base URLs tried in order; NETFIT_MIRROR (one base URL, http(s):// or file://) replaces them.
MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "kmnist": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
}

# md5 of each file as published upstream (the same sums torchvision checks). Only downloads
# are checked: copies found in local or system folders may be recompressed (Debian's are), so
# those are validated structurally by the IDX reader instead.
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
}

TIMEOUT_S = 30  # per connection attempt and per read; a stalled mirror fails instead of hanging
_CHUNK = 1 << 20

# What a failing network looks like to urllib: refused or reset connections, timeouts, HTTP
# errors (HTTPError is a URLError), and a body cut short.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class MirrorsUnreachable(NetfitError):
    """No mirror could deliver a file; ``reason`` says what each attempt ran into."""

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(f"could not download {filename}: {reason}")
        self.filename = filename
        self.reason = reason


class _ChecksumMismatch(Exception):
    """A mirror delivered a file whose md5 is not the published one."""


def mirrors_for(dataset: str) -> list[str]:
    """The base URLs to download ``dataset`` from: NETFIT_MIRROR if set, else the known mirrors."""
    override = os.environ.get("NETFIT_MIRROR")
    return [override] if override else list(MIRRORS[dataset])


def download_files(dataset: str, filenames: list[str], folder: Path) -> None:
    """Download ``filenames`` of ``dataset`` into ``folder``, md5-checked; files already there are kept.

    Each file is tried on every mirror in turn. Raises MirrorsUnreachable when no mirror answers
    and NetfitError when a mirror delivers a file whose md5 is wrong.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NetfitError(
            f"cannot create the download folder {str(folder)!r} ({err.strerror}); "
            "set NETFIT_CACHE_DIR to a writable folder"
        ) from None
    for filename in filenames:
        if (folder / filename).is_file():
            continue
        expected_md5 = MD5[dataset][filename]
        mismatch: _ChecksumMismatch | None = None
        unreachable: list[str] = []
        for base in mirrors_for(dataset):
            url = base.rstrip("/") + "/" + filename
            try:
                download_file(url, folder / filename, expected_md5)
                break
            except _ChecksumMismatch as err:
                mismatch = err  # another mirror may still have a good copy
            except _NETWORK_ERRORS as err:
                unreachable.append(f"{url}: {_describe(err)}")
        else:
            if mismatch is not None:
                raise NetfitError(str(mismatch))
            raise MirrorsUnreachable(filename, "; ".join(unreachable))


def download_file(url: str, destination: Path, expected_md5: str) -> None:
    """Stream ``url`` into ``destination`` atomically, refusing it unless its md5 is ``expected_md5``."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        total = _content_length(response)
        _announce(url, destination, total)
        # The file appears under its name only whole and with the right checksum.
        with atomic_file(destination, suffix=".part") as out:
            md5, received = _copy(response, out, total)
            if total is not None and received != total:
                raise http.client.IncompleteRead(b"", total - received)
            if md5 != expected_md5:
                raise _ChecksumMismatch(
                    f"checksum mismatch for {destination.name} from {url}: expected md5 {expected_md5}, got {md5}; "
                    "the download was deleted; try again later, or put a good copy in the data folder"
                )


def _copy(response: IO[bytes], out: IO[bytes], total: int | None) -> tuple[str, int]:
    digest = hashlib.md5(usedforsecurity=False)
    progress = bar(total, sys.stderr, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
    received = 0
    while chunk := response.read(_CHUNK):
        out.write(chunk)
        digest.update(chunk)
        received += len(chunk)
        if progress is not None:
            progress.update(len(chunk))
    if progress is not None:
        progress.close()
    return digest.hexdigest(), received


def _content_length(response) -> int | None:
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _describe(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _announce(url: str, destination: Path, total: int | None) -> None:
    size = f" ({total / 1e6:.1f} MB)" if total is not None else ""
    print(f"netfit: downloading {url}{size} -> {destination}", file=sys.stderr, flush=True)
