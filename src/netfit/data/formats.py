"""Reading data files: IDX (MNIST's format), CSV, Parquet, Feather, NumPy .npz and .npy, image folders,
whole or in chunks.

Two entry points, one reader per format behind both:

``read_file(path, format=None, target=None, *, header=True, encoding=None, names=None, features=None,
column_types=None) -> Table``
    The whole file as ``Table(X, y, feature_names, ignored)``.
``iter_tables(path, format=None, target=None, *, header=True, encoding=None, names=None, features=None,
column_types=None, chunk_rows=65536) -> Iterator[Table]``
    The same rows as tables of at most ``chunk_rows`` rows, for files larger than memory: a CSV
    is parsed block by block, a Parquet file row group by row group, a Feather file batch by
    batch, a .npy is sliced from a memory map, an .npz or IDX file is one table (their size is
    checked against free memory first). The file's header, sizes and first rows are checked when
    ``iter_tables`` is called, before it returns; a bad cell further down is refused when its
    chunk is reached.

``Table.X``, the features:

- every feature column numeric (numbers or booleans, after ``column_types``): a float32
  ``np.ndarray`` (rows, features), missing cells NaN (``check_arrays`` refuses them; the
  ``data.missing`` policies decide otherwise). IDX and NumPy files keep their dtype (uint8 images).
- any feature column text (typed so by the file, or declared "categorical" or "text"): a
  ``pyarrow.Table`` of the features in order, numeric columns float32, text columns string or
  large_string, nulls where cells are missing, for an encoder to turn into numbers.

Arguments shared by both:

- ``format``: one of ``FORMATS.names()``; left out, inferred from the name (a folder
  is images when it holds PNG or JPEG files, see ``images``, else IDX).
- ``target``: the column to predict (``y`` 1-D: int64 when every cell is an integer, float64
  when every cell is a number, else str labels), or a list of columns (``y`` of shape
  (rows, k), float64, every cell a number). None: no targets (``y`` is None) unless the format
  carries its own (the labels file next to IDX images, the ``y`` key of an .npz).
- ``header``: whether the first CSV row names the columns. False: the columns are named
  ``names`` when given (one name per field), else ``f0, f1, ...``.
- ``encoding``: the CSV text encoding when the file has no byte-order mark (else UTF-8).
- ``features``: read exactly these columns as features, in this order, by name (a reordered
  file is reordered; a missing column is refused). Columns that are neither features nor
  targets are skipped and listed in ``Table.ignored``. None: every non-target column is a
  feature. Files without column names (IDX, NumPy) must then have ``len(features)`` columns.
- ``column_types``: ``data.columns``, column name -> "numeric", "categorical", "text" or
  "ignore" (left out of the features, listed in ``Table.ignored``). A CSV column of numbers with
  a few cells that are not numbers is refused as a typo unless it is declared here.

Every bad file is refused with one NetfitError line naming the file, the problem and what to
do, before anything large is allocated: only regular files are opened (``netfit.files``), and
sizes that headers and footers declare are checked against the file and the free memory first.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from ..errors import NetfitError
from ..files import open_regular
from ..registry import Registry
from .csvfile import csv_columns, csv_tables
from .arrowfile import feather_tables
from .idx import (find_idx_file, idx_images, idx_labels, parse_idx, read_idx, read_idx_dir, read_idx_pair,
                  read_idx_source)
from .images import IMAGE_SUFFIXES, is_image_folder, list_images, read_images
from .npfile import npy_tables, npz_tables
from .parquetfile import parquet_tables
from .table import ReadOptions, Table

__all__ = [
    "Table",
    "FORMATS",
    "read_table",
    "read_file",
    "iter_tables",
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

DEFAULT_CHUNK_ROWS = 65_536

# A reader yields the tables of one file: a single one when chunk_rows is None.
Reader = Callable[[Path, ReadOptions, "int | None"], Iterator[Table]]


def read_table(
    path: str | Path, format: str | None = None, target: str | list[str] | None = None, **options
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read features and targets from a data file: ``X, y = read_table("train.csv", target="label")``.

    The arguments are ``read_file``'s (see the module docstring). An IDX directory gives its
    training part (see ``read_idx_dir`` for both parts). Values are not checked for NaN or
    shape: pass the arrays to ``check_arrays`` for that.
    """
    table = read_file(path, format, target, **options)
    return table.X, table.y


def read_file(
    path: str | Path,
    format: str | None = None,
    target: str | list[str] | None = None,
    *,
    header: bool = True,
    encoding: str | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    features: list[str] | tuple[str, ...] | None = None,
    column_types: Mapping[str, str] | None = None,
) -> Table:
    """The whole file as ``Table(X, y, feature_names, ignored)``; arguments in the module docstring."""
    path, reader, options = _prepare(path, format, target, header, encoding, names, features, column_types)
    [table] = reader(path, options, None)
    return _check_width(table, options, path)


def iter_tables(
    path: str | Path,
    format: str | None = None,
    target: str | list[str] | None = None,
    *,
    header: bool = True,
    encoding: str | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    features: list[str] | tuple[str, ...] | None = None,
    column_types: Mapping[str, str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[Table]:
    """The file as tables of at most ``chunk_rows`` rows; arguments in the module docstring.

    A CSV target column is typed by each chunk alone (int64, float64 or str), where ``read_file``
    types it over the whole file: a caller that needs one type for every chunk converts to it.
    Feature columns have one type in every chunk: a CSV's are decided by its first block (pass
    ``column_types`` to decide them, e.g. as a run was trained).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be 1 or more, got {chunk_rows}")
    path, reader, options = _prepare(path, format, target, header, encoding, names, features, column_types)
    tables = (_check_width(table, options, path) for table in reader(path, options, chunk_rows))
    # The first chunk is read now, so a bad header, a lying size or an empty file is refused
    # before the caller has written any output.
    first = next(tables)
    return itertools.chain([first], tables)


def infer_format(path: str | Path) -> str:
    """The format of ``path`` from its name: .gz/.idx/-ubyte is idx, .png/.jpg/.jpeg images, else the suffix.

    A folder holding PNG or JPEG files (directly or in class subfolders) is images, any other folder idx.

    A path that exists but is not a regular file or a folder (a FIFO, a device, a symlink loop)
    is refused here, so that it is named for what it is rather than for its name.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return "images" if is_image_folder(path) else "idx"
    if os.path.lexists(path):
        with open_regular(path, "data file"):
            pass
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix in IMAGE_SUFFIXES:
        return "images"
    if suffix in (".gz", ".idx") or name.endswith("-ubyte"):
        return "idx"
    raise NetfitError(
        f"cannot tell the format of data file {str(path)!r} from its name; supported formats: "
        f"{', '.join(FORMATS.names())} ({', '.join(_SUFFIXES)}, IDX .gz/-ubyte or a folder, .png/.jpg/.jpeg or a "
        "folder of them); set data.format (--format on evaluate and predict)"
    )


_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".feather": "feather", ".arrow": "feather",
             ".ipc": "feather", ".npz": "npz", ".npy": "npy"}


def _prepare(path, format, target, header, encoding, names, features, column_types) -> tuple[Path, Reader, ReadOptions]:
    path = Path(path).expanduser()
    if not os.path.lexists(path):
        raise NetfitError(f"data file {str(path)!r} does not exist; check the path "
                          "(paths in a spec file are relative to the spec)")
    reader = FORMATS.get(format or infer_format(path))
    options = ReadOptions(target=target, header=header, encoding=encoding,
                          names=None if names is None else tuple(names),
                          features=None if features is None else tuple(features),
                          column_types=dict(column_types) if column_types else None)
    return path, reader, options


def _check_width(table: Table, options: ReadOptions, path: Path) -> Table:
    """Features asked for by name from a file that names no columns: at least their number must agree."""
    if options.features is not None and table.feature_names is None and isinstance(table.X, np.ndarray) \
            and table.X.ndim == 2 \
            and table.X.shape[1] != len(options.features):
        raise NetfitError(f"{str(path)!r} has {table.X.shape[1]} feature columns but {len(options.features)} are "
                          "expected; give it the same columns as the data the run was trained on")
    return table


def _idx_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    yield read_idx_source(path)


def _image_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    # Each image at its own size and mode (auto); a run's images are read with its geometry instead.
    files, labels = list_images(path)
    if not files:
        raise NetfitError(f"{str(path)!r} holds no .png, .jpg or .jpeg files")
    X, _ = read_images(files, source=str(path))
    yield Table(X, None if labels is None else np.array(labels, dtype=str))


FORMATS: Registry[Reader] = Registry("data format")
FORMATS.register("idx", _idx_tables)
FORMATS.register("csv", csv_tables)
FORMATS.register("parquet", parquet_tables)
FORMATS.register("feather", feather_tables)
FORMATS.register("npz", npz_tables)
FORMATS.register("npy", npy_tables)
FORMATS.register("images", _image_tables)
