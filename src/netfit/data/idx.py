"""IDX files (MNIST's format), read as a stream: the header first, then exactly the bytes it declares.

An IDX header states the shape of what follows, so the reader knows the size before it reads the
data: it refuses a raw file whose size disagrees, a shape that needs more memory than is free, and
a gzip stream that keeps expanding past the declared size (a "gzip bomb": a few hundred kB that
inflate to gigabytes). Decompression is bounded, so memory never exceeds the declared array plus
one block, whatever the compressed stream holds.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import NetfitError
from ..files import open_regular, require_memory
from .table import Table, image_shape_of

__all__ = ["parse_idx", "read_idx", "idx_images", "idx_labels", "read_idx_pair", "read_idx_dir",
           "find_idx_file", "labels_next_to"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes (third byte of the magic number); the data is stored big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),  # unsigned byte: MNIST pixels and labels
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Bytes per read: large enough that Python's per-call cost vanishes, small enough to be the only
# memory a read holds besides the array it fills.
_BLOCK = 1 << 20


def parse_idx(content: bytes, source: str) -> np.ndarray:
    """Decode the bytes of an IDX file (gzip-compressed or raw) into an array of its stored shape.

    Gzip is recognised by its magic bytes, whatever the file is called. The array comes back in
    the stored dtype (uint8 for MNIST) in native byte order. ``source`` names the file in errors.
    """
    return _read_stream(io.BytesIO(content), source, len(content))


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) into an array of its stored shape and dtype."""
    with open_regular(path, "data file") as handle:
        return _read_stream(handle, str(path), os.fstat(handle.fileno()).st_size)


def _read_stream(raw: BinaryIO, source: str, size: int) -> np.ndarray:
    gzipped = raw.read(2) == _GZIP_MAGIC
    raw.seek(0)
    if not gzipped:
        return _read_body(raw, source, size, "")
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            return _read_body(stream, source, None, " after gunzip")
    except EOFError:
        raise NetfitError(
            f"{source!r} is a truncated gzip file (the compressed stream ends early); download or copy it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise NetfitError(f"{source!r} is a damaged gzip file ({err}); download or copy it again") from None


def _read_body(stream: BinaryIO, source: str, size: int | None, unpacked: str) -> np.ndarray:
    """The array after the header; ``size`` is the stream's length when known (raw files), else None."""
    head = stream.read(4)
    if len(head) < 4:
        raise NetfitError(
            f"{source!r} is truncated: {len(head)} bytes{unpacked}, too short for an IDX header; "
            "download or copy the file again"
        )
    type_code, ndim = head[2], head[3]
    if head[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        magic = int.from_bytes(head, "big")
        raise NetfitError(
            f"{source!r} is not an IDX file: magic number 0x{magic:08X} (expected 0x00000801 for labels, "
            "0x00000803 for images); check the file, or set data.format (--format on evaluate and predict) if it is not IDX"
        )
    header_size = 4 + 4 * ndim
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise NetfitError(
            f"{source!r} is truncated: expected at least {header_size} bytes{unpacked} of header, "
            f"got {4 + len(dims)}; download or copy the file again"
        )
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = _IDX_DTYPES[type_code]
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: four 32-bit dimensions cannot overflow
    expected = header_size + nbytes
    if size is not None and size < expected:
        raise NetfitError(
            f"{source!r} is truncated: expected {expected} bytes for shape {shape}, got {size}; "
            "download or copy the file again"
        )
    if size is not None and size > expected:
        raise NetfitError(
            f"{source!r} is damaged: {size} bytes, but its header (shape {shape}) describes "
            f"{expected}; download or copy the file again"
        )
    if shape[0] == 0:
        items = "images" if ndim > 1 else "labels"
        raise NetfitError(
            f"{source!r} has no rows: its header declares 0 {items} (shape {shape}); use a file that holds data"
        )
    swapped = nbytes if dtype.itemsize > 1 else 0  # big-endian numbers are copied once into native order
    require_memory(nbytes + swapped, f"{source!r} (IDX shape {shape})",
                   "check that it is the right file, or use a machine with more memory")
    array = np.empty(math.prod(shape), dtype)
    filled = _fill(stream, memoryview(array).cast("B"))
    if filled < nbytes:
        raise NetfitError(
            f"{source!r} is truncated: expected {expected} bytes{unpacked} for shape {shape}, "
            f"got {header_size + filled}; download or copy the file again"
        )
    # One byte more is all it takes to know the stream goes on; a bomb is never inflated further.
    if stream.read(1):
        raise NetfitError(
            f"{source!r} expands beyond the {expected} bytes its header declares (shape {shape}); "
            "it is damaged or not an IDX file; download or copy it again"
        )
    # np.empty's array is writable (torch warns about read-only ones); the byte swap copies only non-bytes.
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _fill(stream: BinaryIO, buffer: memoryview) -> int:
    """Read into ``buffer`` until it is full or the stream ends; the number of bytes read."""
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled:filled + _BLOCK])
        if not count:
            break
        filled += count
    return filled


# ----------------------------------------------------------------------------- images and labels


def idx_images(array: np.ndarray, source: str) -> np.ndarray:
    """Flatten an IDX images array (n, rows, cols, ...) into (n, rows*cols*...), keeping its dtype."""
    if array.ndim < 2:
        raise NetfitError(
            f"{source!r} holds a 1-D array of {len(array)} values, not images; "
            "did you swap the images and labels files?"
        )
    return array.reshape(len(array), -1)


def idx_labels(array: np.ndarray, source: str) -> np.ndarray:
    """Check that an IDX array is 1-D labels; integers come back as int64, floats as float64."""
    if array.ndim != 1:
        raise NetfitError(
            f"{source!r} holds an array of shape {array.shape}, not 1-D labels; "
            "did you swap the images and labels files?"
        )
    return array.astype(np.float64 if np.issubdtype(array.dtype, np.floating) else np.int64)


def read_idx_pair(images_path: str | Path, labels_path: str | Path) -> Table:
    """Read an IDX images file and its labels file: X of shape (n, rows*cols), y int64, and the image shape."""
    images = read_idx(images_path)
    X = idx_images(images, str(images_path))
    y = idx_labels(read_idx(labels_path), str(labels_path))
    if len(X) != len(y):
        raise NetfitError(
            f"{str(images_path)!r} has {len(X)} images but {str(labels_path)!r} has {len(y)} labels; "
            "use the labels file that belongs to these images"
        )
    return Table(X, y, image_shape=image_shape_of(images))


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem`` (un-gzipped), whichever exists first, else None."""
    for name in (f"{stem}.gz", stem):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def read_idx_dir(folder: str | Path) -> tuple[Table, Table | None]:
    """Read a folder of MNIST-style IDX files: the training part and, if present, the test part.

    The folder holds ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (each ``.gz``
    or raw) and optionally ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte``. A folder
    with only the t10k pair gives that pair as its training part and no test part.
    """
    folder = Path(folder)
    pairs = []
    for part in ("train", "t10k"):
        images = find_idx_file(folder, f"{part}-images-idx3-ubyte")
        labels = find_idx_file(folder, f"{part}-labels-idx1-ubyte")
        if (images is None) != (labels is None):
            have, missing = (images, "labels-idx1") if labels is None else (labels, "images-idx3")
            raise NetfitError(
                f"IDX folder {str(folder)!r} has {have.name} but no {part}-{missing}-ubyte[.gz]; add the missing file"
            )
        if images is not None:
            pairs.append(read_idx_pair(images, labels))
    if not pairs:
        raise NetfitError(
            f"IDX folder {str(folder)!r} has no train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
            "(or t10k-...) files; put them there, or point data.path at a data file"
        )
    return pairs[0], (pairs[1] if len(pairs) > 1 else None)


def read_idx_source(path: Path) -> Table:
    """An IDX folder's training part, or an images file with the labels file next to it (if any)."""
    if path.is_dir():
        train, _ = read_idx_dir(path)
        return train
    array = read_idx(path)
    if array.ndim == 1:
        raise NetfitError(
            f"{str(path)!r} holds 1-D labels, not features; point data.path at the images file "
            "(...-images-idx3-ubyte), its labels are found next to it"
        )
    X = idx_images(array, str(path))
    labels = labels_next_to(path)
    if labels is None:
        return Table(X, None, image_shape=image_shape_of(array))
    y = idx_labels(read_idx(labels), str(labels))
    if len(X) != len(y):
        raise NetfitError(
            f"{str(path)!r} has {len(X)} images but {str(labels)!r} has {len(y)} labels; "
            "use the labels file that belongs to these images"
        )
    return Table(X, y, image_shape=image_shape_of(array))


def labels_next_to(images: Path) -> Path | None:
    """The labels file that MNIST's naming puts next to ``images``, if it exists."""
    # train-images-idx3-ubyte.gz sits next to train-labels-idx1-ubyte.gz.
    if "images-idx3" not in images.name:
        return None
    stem = images.name.replace("images-idx3", "labels-idx1").removesuffix(".gz")
    return find_idx_file(images.parent, stem)
