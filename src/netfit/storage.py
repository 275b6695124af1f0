"""Crash-safe files: atomic writes, content hashes and JSON that carries its own seal.

Every file netfit writes into a run goes through here. A write goes to a temporary file in the
same folder, is flushed to disk (fsync), renamed over its final name and the folder is fsynced,
so that after a crash at any instant the name holds either the old content or the new, never a
mix.

Each JSON file carries a seal of its own body, and lists the SHA-256 and size of every other file
of its folder, so one good seal vouches for the whole folder. What a seal proves depends on its
kind:

- ``sha256_of_body`` (the default): the SHA-256 of the body. It catches damage (a torn write, a
  flipped bit, a hand edit that forgets the seal), not a deliberate edit: anyone can recompute it.
- ``hmac_sha256_of_body``, written when ``NETFIT_SIGNING_KEY`` is set: an HMAC-SHA256 of the body
  under that key. Only a holder of the key can make one, and with the key set netfit accepts
  nothing else, so an edited file (weights, metrics, checkpoints: all listed by hash) is refused.

A run folder is untrusted data: JSON is read only from regular files below a size cap, with its
nesting depth checked by a linear scan before the parser sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from .errors import NetfitError
from .files import open_regular, read_regular, require_memory

__all__ = ["arrays_sha256", "write_atomic", "temporary_file", "temporary_folder", "fsync_dir", "read_verified", "dump_sealed_json", "load_sealed_json", "remove_tree",
           "file_entry", "signing_key", "SEAL_KEY", "SIGNED_SEAL_KEY", "SIGNING_KEY_ENV", "MIN_KEY_BYTES",
           "MAX_JSON_BYTES", "MAX_JSON_DEPTH"]

SEAL_KEY = "sha256_of_body"
SIGNED_SEAL_KEY = "hmac_sha256_of_body"
SIGNING_KEY_ENV = "NETFIT_SIGNING_KEY"
MIN_KEY_BYTES = 16  # 128 bits: below that a key can be guessed; `secrets.token_hex(32)` gives 64 characters
# The largest JSON netfit writes is a checkpoint's state.json, and its history grows by about 200
# bytes an epoch: 64 MiB holds some 300,000 epochs, far beyond any run this library is for, and
# parsing that much costs a few hundred MB at most. Anything larger was not written by netfit.
MAX_JSON_BYTES = 64 * 2**20
# netfit's own files nest 5 levels deep; a custom module's model.kwargs may add more. The parser
# recurses once per level, so depth is bounded before it runs (100,000 nested arrays would
# otherwise exhaust the stack); 100 levels stay far below Python's recursion limit.
MAX_JSON_DEPTH = 100


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


def _umask() -> int:
    # Read without changing it where Linux shows it; os.umask can only be read by setting it.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_file(final: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A hidden temporary file beside ``final``, to be renamed onto it: ``(fd, path)``.

    tempfile makes it readable by its owner only (0600); the file it becomes gets the mode any
    new file gets (0644 under the usual umask), so a colleague can read a run or its predictions.
    """
    fd, path = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, path


def temporary_folder(folder: Path, prefix: str) -> Path:
    """A new hidden folder in ``folder``, with the mode any new folder gets (tempfile gives 0700)."""
    path = Path(tempfile.mkdtemp(dir=folder, prefix=prefix))
    os.chmod(path, 0o777 & ~_umask())
    return path


@contextmanager
def atomic_file(path: Path, mode: str = "wb", suffix: str = ".tmp", **options: Any) -> Iterator[IO]:
    """A file that replaces ``path`` only if the ``with`` block ends without an error.

    Written to a temporary file beside ``path``, flushed to disk, renamed onto it, and the
    folder flushed too; on any error the temporary file goes and the old file, if any, is
    untouched. Raises OSError as the operating system reports it.
    """
    fd, tmp = temporary_file(path, suffix)
    try:
        with os.fdopen(fd, mode, **options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (see ``atomic_file``)."""
    with atomic_file(path) as f:
        f.write(data)


def save_file(path: Path, data: bytes) -> None:
    """A file the user asked for (``-o``, ``--apply``, an export): its folder made, written atomically,
    or one line naming the path when that cannot be done."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError as err:
        raise NetfitError(f"cannot write {path} ({err.strerror or err}); choose a writable folder") from None


def write_durably(path: Path, data: bytes) -> None:
    """Write a new file and flush it to disk (inside a staging folder that is renamed into place whole)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def file_entry(data: bytes) -> dict[str, Any]:
    """How a sealed JSON lists another file: its SHA-256 and its size (checked before it is read)."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def read_verified(path: Path, expected: dict[str, Any], listed_in: Path) -> bytes:
    """The bytes of ``path`` if their size and SHA-256 are those ``listed_in`` records, else a NetfitError.

    ``expected`` is a validated :func:`file_entry`. The size is compared before a byte is read,
    so a FIFO, a device or a huge sparse file put in the file's place costs nothing; the bytes
    that were hashed are the bytes the caller parses, so there is no window to swap the file.
    """
    size = expected["bytes"]
    require_memory(size, f"{path} (as {listed_in} lists it)", "free some memory or use a machine with more")
    try:
        handle = open_regular(path, "run file")
    except NetfitError:
        if not path.exists() and not path.is_symlink():
            raise NetfitError(f"{path} is missing (listed in {listed_in}); the run is incomplete") from None
        raise
    with handle:
        actual = os.fstat(handle.fileno()).st_size
        if actual != size:
            raise NetfitError(f"{path} is {actual:,} bytes, but {listed_in} lists {size:,} "
                              "(truncated, damaged or edited after it was written); refusing to use it")
        data = handle.read(size + 1)
    if len(data) != size or not hmac.compare_digest(hashlib.sha256(data).hexdigest(), expected["sha256"]):
        raise NetfitError(f"{path} does not match the hash in {listed_in} (truncated, damaged or edited after it "
                          "was written); refusing to use it")
    return data


def signing_key() -> bytes | None:
    """The key in ``NETFIT_SIGNING_KEY`` (None when unset), refused when too short to be secret."""
    value = os.environ.get(SIGNING_KEY_ENV)
    if value is None:
        return None  # set but empty is refused below: a secret that failed to load must not turn signing off
    key = value.encode("utf-8", "surrogateescape")
    if len(key) < MIN_KEY_BYTES:
        raise NetfitError(f"{SIGNING_KEY_ENV} is {len(key)} bytes; a signing key needs at least {MIN_KEY_BYTES} "
                          "(make one with: python -c 'import secrets; print(secrets.token_hex(32))')")
    return key


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _hmac(key: bytes, body: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def dump_sealed_json(body: dict[str, Any]) -> bytes:
    """``body`` as JSON text, sealed: an HMAC under ``NETFIT_SIGNING_KEY`` if it is set, else a SHA-256."""
    key = signing_key()
    if key is not None:
        seal = {SIGNED_SEAL_KEY: _hmac(key, body)}
    else:
        seal = {SEAL_KEY: hashlib.sha256(_canonical(body)).hexdigest()}
    return (json.dumps({**body, **seal}, indent=1) + "\n").encode("utf-8")


def load_sealed_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Read a file written by :func:`dump_sealed_json`; refuse it if it was cut short, edited or wrongly sealed.

    With ``NETFIT_SIGNING_KEY`` set only a valid HMAC under that key is accepted; without it a
    signed file is refused (its seal cannot be checked) and a plain SHA-256 must match.
    """
    key = signing_key()
    try:
        data = read_regular(path, "run file", max_bytes)
    except NetfitError:
        if not path.exists() and not path.is_symlink():
            raise NetfitError(f"{path} is missing; the run is incomplete") from None
        raise
    raw = _parse_bounded(data, path)
    if not isinstance(raw, dict):
        raise NetfitError(f"{path} is not a JSON object; it was not written by netfit")
    plain, signed = raw.pop(SEAL_KEY, None), raw.pop(SIGNED_SEAL_KEY, None)
    if plain is None and signed is None:
        raise NetfitError(f"{path} carries no seal of its contents; it was not written by netfit or was edited")
    if plain is not None and signed is not None:
        raise NetfitError(f"{path} carries two seals; it was not written by netfit")
    if key is None:
        if signed is not None:
            raise NetfitError(f"{path} is signed; set {SIGNING_KEY_ENV} to the key it was signed with to read it")
        if not isinstance(plain, str) or not hmac.compare_digest(plain, hashlib.sha256(_canonical(raw)).hexdigest()):
            raise NetfitError(f"{path} does not match its own hash (edited or damaged after it was written); "
                              "refusing to use it")
        return raw
    if signed is None:
        raise NetfitError(f"{path} is not signed with {SIGNING_KEY_ENV} (its seal is a plain SHA-256, which anyone "
                          f"can recompute after an edit); refusing it: unset {SIGNING_KEY_ENV} only for runs you "
                          "trust, or train the run again with the key set")
    if not isinstance(signed, str) or not hmac.compare_digest(signed, _hmac(key, raw)):
        raise NetfitError(f"{path} does not carry a valid signature under {SIGNING_KEY_ENV} (signed with another "
                          "key, or edited after it was signed); refusing to use it")
    return raw


_CHUNK = 1 << 20


def _nesting_depth(data: bytes, limit: int) -> int:
    """How deep ``[`` and ``{`` nest in JSON text (string contents skipped), in linear time and small memory.

    Stops counting once ``limit`` is passed; returns a value above ``limit`` then.
    """
    # Escapes pair up left to right: drop escaped backslashes first, then an escaped quote is a
    # backslash before a quote. What is left lies inside a string exactly when an odd number of
    # quotes precede it. Counted a chunk at a time with numpy: a few MB whatever the file's size.
    text = np.frombuffer(data.replace(b"\\\\", b"").replace(b'\\"', b""), dtype=np.uint8)
    quotes_before = depth = deepest = 0
    for start in range(0, len(text), _CHUNK):
        chunk = text[start:start + _CHUNK]
        quotes = np.cumsum(chunk == ord('"'), dtype=np.int64) + quotes_before
        outside = quotes % 2 == 0
        steps = (((chunk == ord("[")) | (chunk == ord("{"))) & outside).astype(np.int64) \
            - (((chunk == ord("]")) | (chunk == ord("}"))) & outside)
        levels = np.cumsum(steps) + depth
        deepest, depth, quotes_before = max(deepest, int(levels.max())), int(levels[-1]), int(quotes[-1])
        if deepest > limit:
            break
    return deepest


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A key written twice would let the value that is checked differ from the one a reader sees.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {repeated!r} appears twice in one object")
    return result


def _parse_bounded(data: bytes, path: Path) -> Any:
    if _nesting_depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise NetfitError(f"{path} nests more than {MAX_JSON_DEPTH} levels deep; netfit never writes that, so it was "
                          "not written by netfit; refusing to read it")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_repeated_keys)
    except UnicodeDecodeError as err:
        raise NetfitError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); it was not written by "
                          "netfit or is damaged") from None
    except (json.JSONDecodeError, ValueError) as err:
        raise NetfitError(f"{path} is damaged ({err}); it cannot be trusted") from None
    except RecursionError:  # a last resort: the depth scan above should make this unreachable
        raise NetfitError(f"{path} nests too deeply to read; it was not written by netfit") from None


def arrays_sha256(*arrays: np.ndarray | None) -> str:
    """SHA-256 of arrays as read (dtype, shape and bytes), so a later read can tell the data changed."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        array = np.ascontiguousarray(array)
        if array.dtype.kind == "O":
            array = array.astype(str)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        if array.size:  # a zero-size array is its dtype and shape (a memoryview of a (n, 0) one cannot be cast)
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def remove_tree(path: Path) -> None:
    """Delete a folder netfit wrote (a staging folder, an old checkpoint); missing is fine."""
    shutil.rmtree(path, ignore_errors=True)
