"""Readers for data files: IDX (MNIST's format), CSV, NumPy .npz and .npy.

Every reader returns NumPy arrays and reports a bad file as one NetfitError line that names
the file, what is wrong and what to do. Nothing here unpickles: ``np.load`` always runs with
``allow_pickle=False``, because a pickle can run arbitrary code when it is loaded.
"""

from __future__ import annotations

import csv
import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ..errors import NetfitError
from ..registry import Registry, nearest

__all__ = [
    "Table",
    "FORMATS",
    "read_table",
    "read_file",
    "infer_format",
    "parse_idx",
    "read_idx",
    "idx_images",
    "idx_labels",
    "read_idx_pair",
    "read_idx_dir",
    "find_idx_file",
    "csv_columns",
]

_GZIP_MAGIC = b"\x1f\x8b"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"

# IDX type codes (third byte of the magic number); the data is stored big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),  # unsigned byte: MNIST pixels and labels
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Cells that mean "no value" in a CSV file, compared after strip() and lower().
_MISSING = frozenset({"", "na", "n/a", "nan", "null"})

_NPZ_FEATURE_KEYS = ("X", "x", "features")
_NPZ_TARGET_KEYS = ("y", "labels", "target")


class Table(NamedTuple):
    """Features, targets (None when the file has none) and column names (None when unknown)."""

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str] | None = None


# ----------------------------------------------------------------------------- dispatch


def read_table(
    path: str | Path, format: str | None = None, target: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read features and targets from a data file: ``X, y = read_table("train.csv", target="label")``.

    ``format`` is one of ``FORMATS.names()`` (idx, csv, npz, npy); left out, it is inferred from
    the file name. ``target`` names the CSV column to predict; without it every column is a
    feature and ``y`` is None, as at predict time. Files of the other formats carry their own
    targets (an IDX labels file next to the images, the ``y`` key of an .npz), or none (.npy).
    An IDX directory gives its training part (see ``read_idx_dir`` for both parts). Values are
    not checked for NaN or shape: pass the arrays to ``check_arrays`` for that.
    """
    table = read_file(path, format, target)
    return table.X, table.y


def read_file(path: str | Path, format: str | None = None, target: str | None = None) -> Table:
    """Like ``read_table``, but also returns the feature names (the CSV header) when the file has them."""
    path = Path(path).expanduser()
    if not path.exists():
        raise NetfitError(
            f"data file {str(path)!r} does not exist; check the path (paths in a spec file are relative to the spec)"
        )
    reader = FORMATS.get(format or infer_format(path))
    return reader(path, target)


def infer_format(path: str | Path) -> str:
    """The format of ``path`` from its name: a directory or .gz/.idx/-ubyte is idx, else the suffix."""
    path = Path(path)
    if path.is_dir():
        return "idx"
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix in (".csv", ".npz", ".npy"):
        return suffix[1:]
    if suffix in (".gz", ".idx") or name.endswith("-ubyte"):
        return "idx"
    raise NetfitError(
        f"cannot tell the format of data file {str(path)!r} from its name; supported formats: "
        f"{', '.join(FORMATS.names())} (.csv, .npz, .npy, IDX .gz/-ubyte or a folder); set data.format"
    )


# ----------------------------------------------------------------------------- IDX


def parse_idx(content: bytes, source: str) -> np.ndarray:
    """Decode the bytes of an IDX file (gzip-compressed or raw) into an array of its stored shape.

    Gzip is recognised by its magic bytes, whatever the file is called. The array comes back in
    the stored dtype (uint8 for MNIST) in native byte order. ``source`` names the file in errors.
    """
    gzipped = content[:2] == _GZIP_MAGIC
    if gzipped:
        content = _gunzip(content, source)
    unpacked = " after gunzip" if gzipped else ""
    if len(content) < 4:
        raise NetfitError(
            f"{source!r} is truncated: {len(content)} bytes{unpacked}, too short for an IDX header; "
            "download or copy the file again"
        )
    type_code, ndim = content[2], content[3]
    if content[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        magic = int.from_bytes(content[:4], "big")
        raise NetfitError(
            f"{source!r} is not an IDX file: magic number 0x{magic:08X} (expected 0x00000801 for labels, "
            "0x00000803 for images); check the file, or set data.format if it is not IDX"
        )
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise NetfitError(
            f"{source!r} is truncated: expected at least {header_size} bytes{unpacked} of header, "
            f"got {len(content)}; download or copy the file again"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    dtype = _IDX_DTYPES[type_code]
    count = math.prod(shape)
    expected = header_size + count * dtype.itemsize
    if len(content) < expected:
        raise NetfitError(
            f"{source!r} is truncated: expected {expected} bytes{unpacked} for shape {shape}, got {len(content)}; "
            "download or copy the file again"
        )
    if len(content) > expected:
        raise NetfitError(
            f"{source!r} is damaged: {len(content)} bytes{unpacked}, but its header (shape {shape}) describes "
            f"{expected}; download or copy the file again"
        )
    stored = np.frombuffer(content, dtype=dtype, count=count, offset=header_size).reshape(shape)
    # A copy, because frombuffer's array is read-only and torch warns about those.
    return stored.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) into an array of its stored shape and dtype."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise NetfitError(f"data file {str(path)!r} does not exist; check the path") from None
    except (IsADirectoryError, PermissionError) as err:
        raise NetfitError(f"cannot read IDX file {str(path)!r}: {err.strerror}; check the path") from None
    return parse_idx(content, str(path))


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


def read_idx_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an IDX images file and its labels file: ``(X, y)`` with X of shape (n, rows*cols), y int64."""
    X = idx_images(read_idx(images_path), str(images_path))
    y = idx_labels(read_idx(labels_path), str(labels_path))
    if len(X) != len(y):
        raise NetfitError(
            f"{str(images_path)!r} has {len(X)} images but {str(labels_path)!r} has {len(y)} labels; "
            "use the labels file that belongs to these images"
        )
    return X, y


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
            pairs.append(Table(*read_idx_pair(images, labels)))
    if not pairs:
        raise NetfitError(
            f"IDX folder {str(folder)!r} has no train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] "
            "(or t10k-...) files; put them there, or point data.path at a data file"
        )
    return pairs[0], (pairs[1] if len(pairs) > 1 else None)


def _read_idx_source(path: Path, target: str | None) -> Table:
    if path.is_dir():
        train, _ = read_idx_dir(path)
        return train
    array = read_idx(path)
    if array.ndim == 1:
        raise NetfitError(
            f"{str(path)!r} holds 1-D labels, not features; point data.path at the images file "
            "(...-images-idx3-ubyte), its labels are found next to it"
        )
    labels = _labels_next_to(path)
    if labels is None:
        return Table(idx_images(array, str(path)), None)
    X = idx_images(array, str(path))
    y = idx_labels(read_idx(labels), str(labels))
    if len(X) != len(y):
        raise NetfitError(
            f"{str(path)!r} has {len(X)} images but {str(labels)!r} has {len(y)} labels; "
            "use the labels file that belongs to these images"
        )
    return Table(X, y)


def _labels_next_to(images: Path) -> Path | None:
    # MNIST's naming: train-images-idx3-ubyte.gz sits next to train-labels-idx1-ubyte.gz.
    if "images-idx3" not in images.name:
        return None
    stem = images.name.replace("images-idx3", "labels-idx1").removesuffix(".gz")
    return find_idx_file(images.parent, stem)


def _gunzip(content: bytes, source: str) -> bytes:
    try:
        return gzip.decompress(content)
    except EOFError:
        raise NetfitError(
            f"{source!r} is a truncated gzip file (the compressed stream ends early); download or copy it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise NetfitError(f"{source!r} is a damaged gzip file ({err}); download or copy it again") from None


# ----------------------------------------------------------------------------- CSV


def csv_columns(path: str | Path) -> list[str]:
    """The header row of a CSV file (column names, stripped of spaces)."""
    path = Path(path)
    with _open_text(path) as file:
        header = next(csv.reader(file), None)
    if header is None:
        raise NetfitError(f"CSV file {str(path)!r} is empty; it needs a header row with column names")
    return [name.strip() for name in header]


def _read_csv(path: Path, target: str | None) -> Table:
    with _open_text(path) as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise NetfitError(f"CSV file {str(path)!r} is empty; it needs a header row with column names")
        header = [name.strip() for name in header]
        rows: list[list[str]] = []
        lines: list[int] = []  # file line of each data row, for messages
        try:
            for row in reader:
                if not row:  # a blank line, e.g. at the end of the file
                    continue
                if len(row) != len(header):
                    raise NetfitError(
                        f"{str(path)!r} line {reader.line_num} has {len(row)} fields but the header has "
                        f"{len(header)}; fix that line (a missing or extra comma?)"
                    )
                rows.append(row)
                lines.append(reader.line_num)
        except csv.Error as err:
            raise NetfitError(f"{str(path)!r} line {reader.line_num} is not valid CSV ({err}); fix that line") from None
        except UnicodeDecodeError:
            raise NetfitError(f"{str(path)!r} is not UTF-8 text; save it as UTF-8 CSV") from None

    target_index = None
    if target is not None:
        if target not in header:
            hint = nearest(target, header)
            did_you_mean = f"did you mean {hint!r}? " if hint else ""
            raise NetfitError(
                f"{str(path)!r} has no column {target!r}; {did_you_mean}columns: {', '.join(header)}; set data.target"
            )
        target_index = header.index(target)
    feature_columns = [i for i in range(len(header)) if i != target_index]
    cells = np.array(rows, dtype=str).reshape(len(rows), len(header))
    X = _csv_features(cells, feature_columns, header, lines, path)
    y = None if target_index is None else _csv_target(cells[:, target_index], header[target_index], lines, path)
    return Table(X, y, [header[i] for i in feature_columns])


def _csv_features(cells: np.ndarray, columns: list[int], header: list[str], lines: list[int], path: Path) -> np.ndarray:
    block = cells[:, columns]
    try:
        X = block.astype(np.float64)
    except ValueError:
        # numpy does not say which cell failed; find the first one, in file order, for the message.
        for row, line in enumerate(lines):
            for j, column in enumerate(columns):
                text = str(block[row, j])
                where = f"at line {line} (data row {row + 1}), column {header[column]!r}"
                if text.strip().lower() in _MISSING:
                    raise NetfitError(f"{str(path)!r}: missing value {where}; fill it in or drop the row")
                try:
                    float(text)
                except ValueError:
                    raise NetfitError(
                        f"{str(path)!r}: non-numeric value {text!r} {where}; feature columns must hold numbers, "
                        f"so encode or drop column {header[column]!r}, or make it the target with data.target"
                    ) from None
        raise  # numpy and float() disagree on a cell: an internal bug, not the user's
    missing = np.isnan(X)  # "nan" parses as NaN; the other missing markers failed above
    if missing.any():
        row, j = divmod(int(np.argmax(missing.reshape(-1))), len(columns))
        raise NetfitError(
            f"{str(path)!r}: missing value at line {lines[row]} (data row {row + 1}), column {header[columns[j]]!r}; "
            "fill it in or drop the row"
        )
    return X


def _csv_target(column: np.ndarray, name: str, lines: list[int], path: Path) -> np.ndarray:
    values = np.char.strip(column)
    missing = np.isin(np.char.lower(values), list(_MISSING))
    if missing.any():
        row = int(np.argmax(missing))
        raise NetfitError(
            f"{str(path)!r}: missing target value at line {lines[row]} (data row {row + 1}), column {name!r}; "
            "fill it in or drop the row"
        )
    try:
        return values.astype(np.float64)
    except ValueError:
        return values.astype(str)  # class labels; the caller maps them to ids


def _open_text(path: Path):
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet programs put before the header.
        return path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise NetfitError(f"data file {str(path)!r} does not exist; check the path") from None
    except (IsADirectoryError, PermissionError) as err:
        raise NetfitError(f"cannot read CSV file {str(path)!r}: {err.strerror}; check the path") from None


# ----------------------------------------------------------------------------- NumPy


def _read_npz(path: Path, target: str | None) -> Table:
    _expect_magic(path, _ZIP_MAGIC, "a NumPy .npz archive (numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            x_key = _one_key(archive.files, _NPZ_FEATURE_KEYS, path, required=True)
            y_key = _one_key(archive.files, _NPZ_TARGET_KEYS, path, required=False)
            X = _load_member(archive, x_key, path)
            y = None if y_key is None else _load_member(archive, y_key, path)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise NetfitError(f"{str(path)!r} is not a readable .npz archive ({err}); save it with numpy.savez") from None
    return Table(_numeric_features(X, f"{path}[{x_key!r}]"), None if y is None else _targets(y, f"{path}[{y_key!r}]"))


def _read_npy(path: Path, target: str | None) -> Table:
    _expect_magic(path, _NPY_MAGIC, "a NumPy .npy file (numpy.save)")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise NetfitError(_object_array_message(str(path), err)) from None
    return Table(_numeric_features(array, str(path)), None)


def _expect_magic(path: Path, magic: bytes, what: str) -> None:
    try:
        with path.open("rb") as file:
            start = file.read(len(magic))
    except (IsADirectoryError, PermissionError) as err:
        raise NetfitError(f"cannot read {str(path)!r}: {err.strerror}; check the path") from None
    if start != magic:
        raise NetfitError(f"{str(path)!r} is not {what}; check the file, or set data.format to its real format")


def _one_key(keys: list[str], wanted: tuple[str, ...], path: Path, required: bool) -> str | None:
    found = [key for key in wanted if key in keys]
    if len(found) > 1:
        raise NetfitError(f"{str(path)!r} has both keys {found[0]!r} and {found[1]!r}; keep one of them")
    if not found and required:
        raise NetfitError(
            f"{str(path)!r} has no features array: expected key {wanted[0]!r} (or {', '.join(map(repr, wanted[1:]))}), "
            f"found {', '.join(map(repr, keys)) or 'no keys'}; save it with numpy.savez(path, X=X, y=y)"
        )
    return found[0] if found else None


def _load_member(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as err:
        raise NetfitError(_object_array_message(f"{path}[{key!r}]", err)) from None


def _object_array_message(source: str, err: Exception) -> str:
    if "pickle" in str(err).lower() or "object" in str(err).lower():
        return (
            f"{source!r} holds a Python object array, which netfit does not load because unpickling can run code; "
            "save plain numeric arrays (e.g. X.astype('float32'))"
        )
    return f"{source!r} is not a readable NumPy array ({err}); save it with numpy.save or numpy.savez"


def _numeric_features(X: np.ndarray, source: str) -> np.ndarray:
    """Flatten images (n, h, w, ...) to (n, features); keep uint8 and floats, widen other numbers to float64."""
    if X.dtype == np.uint8 or X.dtype in (np.float32, np.float64):
        converted = X
    elif X.dtype == np.float16:
        converted = X.astype(np.float32)
    elif np.issubdtype(X.dtype, np.integer) or X.dtype == np.bool_:
        converted = X.astype(np.float64)
    else:
        raise NetfitError(f"{source!r}: features must be numbers, got dtype {X.dtype}; save a numeric array")
    return converted.reshape(len(converted), -1) if converted.ndim > 2 else converted


def _targets(y: np.ndarray, source: str) -> np.ndarray:
    """int64 class ids, float64 regression targets, or str class labels."""
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float64)
    if np.issubdtype(y.dtype, np.str_):
        return y
    raise NetfitError(f"{source!r}: targets must be numbers or strings, got dtype {y.dtype}; save y as numbers")


# ----------------------------------------------------------------------------- registry

Reader = Callable[[Path, "str | None"], Table]

FORMATS: Registry[Reader] = Registry("data format")
FORMATS.register("idx", _read_idx_source)
FORMATS.register("csv", _read_csv)
FORMATS.register("npz", _read_npz)
FORMATS.register("npy", _read_npy)
