"""Crash-safe files: atomic writes, content hashes and JSON that carries its own hash.

Every file netfit writes into a run goes through here. A write goes to a temporary file in the
same folder, is flushed to disk (fsync), renamed over its final name and the folder is fsynced,
so that after a crash at any instant the name holds either the old content or the new, never a
mix. Hashes are SHA-256 of the bytes; a JSON file records the hash of its own body, so an edit
or a torn write of the JSON itself is caught too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import NetfitError

__all__ = ["write_atomic", "fsync_dir", "read_verified", "dump_sealed_json", "load_sealed_json", "remove_tree",
           "SEAL_KEY"]

SEAL_KEY = "sha256_of_body"


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, fsync of the folder.

    Raises OSError as the operating system reports it; the old file, if any, is untouched then.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def read_verified(path: Path, expected_sha256: str, listed_in: Path) -> bytes:
    """The bytes of ``path`` if their SHA-256 is the one ``listed_in`` records, else a NetfitError.

    The bytes that were hashed are the bytes the caller parses: no window to swap the file.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NetfitError(f"{path} is missing (listed in {listed_in}); the run is incomplete") from None
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise NetfitError(f"{path} does not match the hash in {listed_in} (truncated, damaged or edited after it "
                          "was written); refusing to use it")
    return data


def _body_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def dump_sealed_json(body: dict[str, Any]) -> bytes:
    """``body`` as JSON text with the hash of its canonical form added under ``SEAL_KEY``."""
    return (json.dumps({**body, SEAL_KEY: _body_hash(body)}, indent=1) + "\n").encode("utf-8")


def load_sealed_json(path: Path) -> dict[str, Any]:
    """Read a file written by :func:`dump_sealed_json`; refuse it if it was cut short or edited."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NetfitError(f"{path} is missing; the run is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NetfitError(f"{path} is damaged ({err}); it cannot be trusted") from None
    if not isinstance(raw, dict) or SEAL_KEY not in raw:
        raise NetfitError(f"{path} carries no hash of its contents; it was not written by this netfit "
                          "or was edited")
    seal = raw.pop(SEAL_KEY)
    if seal != _body_hash(raw):
        raise NetfitError(f"{path} does not match its own hash (edited or damaged after it was written); "
                          "refusing to use it")
    return raw


def remove_tree(path: Path) -> None:
    """Delete a folder netfit wrote (a staging folder, an old checkpoint); missing is fine."""
    shutil.rmtree(path, ignore_errors=True)
