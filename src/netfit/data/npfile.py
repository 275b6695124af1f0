"""NumPy .npy and .npz files, read only after their headers agree with the file and the free memory.

A .npy header states shape and dtype, so the bytes an array needs are known before any is read.
The header is parsed here first (with NumPy's own header parser) and the claim is checked against
what holds the data: the rest of a .npy file, or the uncompressed size an .npz archive declares for
the member. Only then is memory allocated, and only as much as the claim, which must also fit in
free memory. np.load is never called on the user's file: it would allocate whatever the header says
and fail later, or not at all for a file that lies. Nothing here unpickles: object arrays are
refused from their header, because unpickling can run arbitrary code.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from ..errors import NetfitError
from ..files import describe_bytes, open_regular, require_memory
from .table import ReadOptions, Table, image_shape_of

__all__ = ["npy_tables", "npz_tables"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"

_NPZ_FEATURE_KEYS = ("X", "x", "features")
_NPZ_TARGET_KEYS = ("y", "labels", "target")

# NumPy refuses headers above this size by default too; a longer one is not a file numpy.save wrote.
_MAX_HEADER = 10_000

_BLOCK = 1 << 20  # bytes per read from a file or an archive member
_TARGET_SHAPES = "targets must be one value per row or one row of values per row"


class _Header(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    size: int  # bytes of the header itself: the data starts here

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: no overflow, however large

    def describe(self) -> str:
        return f"shape {self.shape}, {self.dtype}"


# ----------------------------------------------------------------------------- .npy


def npy_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    """Features from a .npy file: all at once, or ``chunk_rows`` rows at a time from a memory map."""
    source = str(path)
    with open_regular(path, "data file") as handle:
        _expect_magic(handle, _NPY_MAGIC, source, "a NumPy .npy file (numpy.save)")
        header = _read_header(handle, source)
        held = os.fstat(handle.fileno()).st_size - header.size
        if held != header.nbytes:
            fault = "truncated" if held < header.nbytes else "damaged"
            raise NetfitError(
                f"{source!r}: its header claims {describe_bytes(header.nbytes)} ({header.describe()}) but the file "
                f"holds {describe_bytes(held)} after its header; the file is {fault} or not what it claims; "
                "save it again with numpy.save"
            )
        out = _feature_dtype(header, source)
        if chunk_rows is None:
            converting = out != header.dtype
            require_memory(header.nbytes + (_converted_bytes(header, out) if converting else 0),
                           f"{source!r} ({header.describe()})", _MEMORY_FIX)
            array = _read_array(handle, header, source)
            image_shape = image_shape_of(array)
            X = _features(array, out)
            del array  # a converted copy stands alone, as before
            yield Table(X, None, image_shape=image_shape)
            return
        # A memory map reads only the rows of the chunk being copied, so a file larger than memory streams.
        mapped = (np.empty(header.shape, header.dtype) if header.nbytes == 0 else
                  np.memmap(handle, header.dtype, "r", header.size, header.shape, "F" if header.fortran else "C"))
        for start in range(0, header.shape[0], chunk_rows):
            yield Table(_features(np.array(mapped[start:start + chunk_rows]), out), None)


def _expect_magic(handle: BinaryIO, magic: bytes, source: str, what: str) -> None:
    """Refuse a file that does not start as ``what`` does, then rewind it for its reader."""
    if handle.read(len(magic)) != magic:
        raise NetfitError(f"{source!r} is not {what}; check the file, or set data.format (--format on evaluate and predict) "
                          "to its real format")
    handle.seek(0)


def _read_array(stream: BinaryIO, header: _Header, source: str) -> np.ndarray:
    """The array that follows ``header``, read into memory allocated for exactly the bytes it claims."""
    flat = np.empty(math.prod(header.shape), header.dtype)
    wanted = header.nbytes
    filled = 0
    buffer = memoryview(flat).cast("B") if wanted else memoryview(b"")
    while filled < wanted:
        count = stream.readinto(buffer[filled:filled + _BLOCK])
        if not count:
            raise NetfitError(f"{source!r} ended after {describe_bytes(filled)} of the "
                              f"{describe_bytes(wanted)} its header claims; the file is truncated, "
                              "or changed while it was read")
        filled += count
    if header.fortran:
        return flat.reshape(header.shape[::-1]).transpose()
    return flat.reshape(header.shape)


def _read_header(stream: BinaryIO, source: str) -> _Header:
    """Parse the header at the start of ``stream``, leaving ``stream`` at the first data byte."""
    start = stream.read(10)
    if start[:6] != _NPY_MAGIC:
        raise NetfitError(f"{source!r} is not a NumPy array (no .npy header); save it with numpy.save or numpy.savez")
    major = start[6] if len(start) > 6 else None
    if major == 1:
        prefix = start
    elif major in (2, 3):
        prefix = start + stream.read(2)
    else:
        raise NetfitError(f"{source!r} is a .npy file of format version {major}, which netfit does not read; "
                          "save it with numpy.save")
    if len(prefix) < (10 if major == 1 else 12):
        raise NetfitError(f"{source!r} is truncated inside its .npy header; save it again with numpy.save")
    length = int.from_bytes(prefix[8:], "little")
    if length > _MAX_HEADER:
        raise NetfitError(f"{source!r} has a .npy header of {length} bytes (numpy.save writes at most a few "
                          "hundred); the file is damaged or not what it claims")
    text = stream.read(length)
    if len(text) < length:
        raise NetfitError(f"{source!r} is truncated inside its .npy header; save it again with numpy.save")
    # NumPy parses the header it wrote; only these few bytes are handed to it.
    buffer = io.BytesIO(prefix + text)
    try:
        version = npy_format.read_magic(buffer)
        reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = reader(buffer)
    except (ValueError, SyntaxError, TypeError) as err:
        raise NetfitError(f"{source!r} has a damaged .npy header ({err}); save it again with numpy.save") from None
    if any(dim < 0 for dim in shape):
        raise NetfitError(f"{source!r} has a damaged .npy header (shape {shape}); save it again with numpy.save")
    header = _Header(tuple(shape), dtype, bool(fortran), len(prefix) + length)
    if dtype.hasobject:
        raise NetfitError(
            f"{source!r} holds a Python object array, which netfit does not load because unpickling can run code; "
            "save plain numeric arrays (e.g. X.astype('float32'))"
        )
    return header


# ----------------------------------------------------------------------------- .npz


def npz_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    """Features (key X, x or features) and targets (y, labels or target) from an .npz archive, as one table."""
    source = str(path)
    with open_regular(path, "data file") as handle:
        _expect_magic(handle, _ZIP_MAGIC, source, "a NumPy .npz archive (numpy.savez)")
        try:
            with zipfile.ZipFile(handle) as archive:
                # np.load names members without their .npy suffix; the keys match what numpy.savez was given.
                members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
                x_key = _one_key(list(members), _NPZ_FEATURE_KEYS, source, required=True)
                y_key = _one_key(list(members), _NPZ_TARGET_KEYS, source, required=False)
                # Kept as read until its shape is known: (n, height, width[, channels]) arrays are images.
                features, out = _read_member(archive, members[x_key], f"{source}[{x_key!r}]", _feature_dtype,
                                             lambda array, dtype: (array, dtype))
                image_shape = image_shape_of(features)
                X = _features(features, out)
                del features  # a converted copy stands alone, as before
                y = None if y_key is None else _read_member(archive, members[y_key], f"{source}[{y_key!r}]",
                                                            _target_dtype, _targets)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as err:
            # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks;
            # OSError: offsets in the archive that point outside the file.
            raise NetfitError(f"{source!r} is not a readable .npz archive ({err}); save it with numpy.savez") from None
    yield Table(X, y, image_shape=image_shape)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, plan, convert) -> np.ndarray:
    with archive.open(info) as stream:
        header = _read_header(stream, source)
        declared = info.file_size - header.size
        if declared != header.nbytes:
            raise NetfitError(
                f"{source!r}: its header claims {describe_bytes(header.nbytes)} ({header.describe()}) but the "
                f"archive declares {describe_bytes(max(declared, 0))} for it; the file is damaged or not what it "
                "claims; save it again with numpy.savez"
            )
        out = plan(header, source)
        converting = out != header.dtype
        require_memory(header.nbytes + (_converted_bytes(header, out) if converting else 0),
                       f"{source!r} ({header.describe()})", _MEMORY_FIX)
        array = _read_array(stream, header, source)
        # Reading past the end checks the member's CRC, and that it holds nothing beyond its claim.
        if stream.read(1):
            raise NetfitError(f"{source!r} holds more than its header claims; save it again with numpy.savez")
    return convert(array, out)


def _one_key(keys: list[str], wanted: tuple[str, ...], source: str, required: bool) -> str | None:
    found = [key for key in wanted if key in keys]
    if len(found) > 1:
        raise NetfitError(f"{source!r} has both keys {found[0]!r} and {found[1]!r}; keep one of them")
    if not found and required:
        raise NetfitError(
            f"{source!r} has no features array: expected key {wanted[0]!r} (or {', '.join(map(repr, wanted[1:]))}), "
            f"found {', '.join(map(repr, keys)) or 'no keys'}; save it with numpy.savez(path, X=X, y=y)"
        )
    return found[0] if found else None


# ----------------------------------------------------------------------------- what arrays may hold

_MEMORY_FIX = "check that it is the right file, or read it on a machine with more memory"


def _converted_bytes(header: _Header, out: np.dtype) -> int:
    return math.prod(header.shape) * out.itemsize


def _feature_dtype(header: _Header, source: str) -> np.dtype:
    """The dtype features are kept in, decided from the header: uint8 images and floats stay, other numbers widen."""
    if not header.shape:
        raise NetfitError(f"{source!r} holds a single value, not rows of features; save an array of shape "
                          "(rows, features)")
    if header.shape[0] == 0:
        raise NetfitError(f"{source!r} has no rows (shape {header.shape}); save an array that holds data")
    kind, size = header.dtype.kind, header.dtype.itemsize
    if kind == "u" and size == 1:
        return np.dtype(np.uint8)  # images: a quarter of float32's memory until the model needs them
    if kind == "f" and size in (4, 8):
        return np.dtype(f"f{size}")
    if kind == "f" and size == 2:
        return np.dtype(np.float32)
    if kind in "iub":
        return np.dtype(np.float64)
    raise NetfitError(f"{source!r}: features must be numbers, got dtype {header.dtype}; save a numeric array")


def _features(array: np.ndarray, out: np.dtype) -> np.ndarray:
    """``array`` in dtype ``out``, images (n, h, w, ...) flattened to (n, features)."""
    converted = array.astype(out, copy=False)
    return converted.reshape(len(converted), -1) if converted.ndim > 2 else converted


def _target_dtype(header: _Header, source: str) -> np.dtype:
    """int64 class ids, float64 regression targets, or str class labels, decided from the header."""
    if not header.shape or len(header.shape) > 2:
        raise NetfitError(f"{source!r}: {_TARGET_SHAPES}, got shape {header.shape}; "
                          "save y with shape (rows,) or (rows, targets)")
    kind = header.dtype.kind
    if kind in "iub":
        return np.dtype(np.int64)
    if kind == "f":
        return np.dtype(np.float64)
    if kind == "U" and len(header.shape) == 1:
        return header.dtype.newbyteorder("=")
    if kind == "U":
        raise NetfitError(f"{source!r}: several targets per row must be numbers (they are regression targets), "
                          f"got dtype {header.dtype}; save y as numbers")
    raise NetfitError(f"{source!r}: targets must be numbers or strings, got dtype {header.dtype}; save y as numbers")


def _targets(array: np.ndarray, out: np.dtype) -> np.ndarray:
    return array.astype(out, copy=False)
