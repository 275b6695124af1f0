"""Arrow columns to ``Table.X`` and ``Table.y``: the one place that decides what a column becomes.

Every table reader (CSV, Parquet, Feather) hands its columns over as Arrow arrays, so the rules
are the same whatever the file:

- A feature column of numbers or booleans becomes float32, a missing cell NaN (a null in a
  pyarrow.Table). When every feature is numeric, ``X`` is one float32 ndarray (rows, features),
  filled column by column and each Arrow column freed once copied, so reading costs the result
  about once, not twice.
- A feature column of text (or declared "categorical"/"text" in ``data.columns``) stays text,
  and ``X`` becomes a ``pyarrow.Table`` of the features in order: numeric columns float32,
  text columns string, nulls where cells are missing. An encoder turns it into numbers.
- Text that is really numbers (a CSV column that pyarrow could not type because of a few cells)
  is a typo, not a category: it is refused naming the first cell that is not a number, when the
  reader asks for that check (CSV does; Parquet and Feather keep the types they were written with).
- One target: int64 when every value is an integer (a CSV cell an integer literal), float64
  when every value is a number, else str labels. Several targets: float64 (rows, targets).

A bad cell is named by the reader's ``Origin.locate``: a line and data row for CSV, a data row
for Parquet and Feather.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import NetfitError
from .columns import Columns
from .table import Table

__all__ = ["Origin", "empty_float32", "features_of", "targets_of", "table_of", "check_schema", "rechunked", "is_numeric", "is_text",
           "MISSING"]

# Cells that mean "no value", compared after strip() and lower().
MISSING = ("", "na", "n/a", "nan", "null")
_MISSING_SET = pa.array(MISSING)
# What Python's float() accepts, less digit separators: the CSV reader's notion of a number.
_NUMBER = r"(?i)^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf|infinity|nan)$"
# A text column whose non-missing cells are all numbers but this many (or this share) is a
# column of numbers with typos in it, not a column of categories.
_TYPOS = 3
_TYPO_SHARE = 0.01


class Origin(NamedTuple):
    """Where a table's rows come from, for messages."""

    source: str  # the file, as messages name it
    locate: Callable[[int, str], str]  # (0-based data row of the file, column) -> "line 3 (data row 2), column 'b'"
    start: int = 0  # data rows of the file before this table (a later chunk)


def is_numeric(type_: pa.DataType) -> bool:
    return (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)
            or pa.types.is_decimal(type_) or pa.types.is_null(type_))


def is_text(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        return is_text(type_.value_type)
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


# ----------------------------------------------------------------------------- features


def features_of(columns: list[pa.ChunkedArray], rows: int, plan: Columns, origin: Origin, *,
                typo_check: bool) -> np.ndarray | pa.Table:
    """``X`` from the feature columns (in ``plan.features`` order); ``columns`` is emptied as they are used.

    ``typo_check``: an undeclared text column of numbers with a few typos is refused, and one of
    numbers only becomes numeric (CSV, where pyarrow types a column by its cells).
    """
    typed = [_feature(columns[j], name, plan.declared.get(name), origin, typo_check)
             for j, name in enumerate(plan.features)]
    columns.clear()
    if all(pa.types.is_floating(column.type) for column in typed):
        return _filled(typed, rows)
    return pa.table(typed, names=plan.features)


def _feature(column: pa.ChunkedArray, name: str, declared: str | None, origin: Origin,
             typo_check: bool) -> pa.ChunkedArray:
    """One feature column as float32 or string."""
    type_ = column.type
    if declared in ("categorical", "text"):
        if is_text(type_):
            return _as_string(column)
        return pc.cast(column, pa.string())  # zip codes stored as integers are still categories
    if is_numeric(type_):
        return column if type_ == pa.float32() else pc.cast(column, pa.float32(), safe=False)
    if not is_text(type_):
        raise NetfitError(f"{origin.source!r}: column {name!r} holds {type_} values, which netfit cannot use as a "
                          f"feature; set data.columns.{name} = \"ignore\" to leave it out, or store it as numbers or "
                          "text")
    if declared != "numeric" and not typo_check:
        return _as_string(column)
    text, missing, number = _parse_marks(column)
    bad = pc.and_(pc.invert(missing), pc.invert(number))
    bad_count = pc.sum(bad).as_py() or 0
    if bad_count == 0:
        return pc.cast(_numbers(text, missing), pa.float32())
    numbers = len(column) - (pc.sum(missing).as_py() or 0) - bad_count
    typo = numbers >= bad_count and bad_count <= max(_TYPOS, _TYPO_SHARE * (numbers + bad_count))
    if declared == "numeric" or typo:
        row = _first(bad)
        cell = text[row].as_py()
        fix = (f'fix the cell (data.columns.{name} = "numeric" says it holds numbers)' if declared == "numeric"
               else f'fix the cell, or set data.columns.{name} = "categorical" if the column holds categories')
        raise NetfitError(f"{origin.source!r}: non-numeric value {cell!r} at "
                          f"{origin.locate(origin.start + row, name)}; {fix}")
    return pc.if_else(missing, pa.scalar(None, pa.string()), text)


def _as_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _parse_marks(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray]:
    """The cells stripped, which of them are missing, and which are numbers (both without nulls)."""
    text = pc.utf8_trim_whitespace(_as_string(column))
    missing = pc.or_kleene(pc.is_null(text), pc.is_in(pc.utf8_lower(text), value_set=_MISSING_SET))
    missing = pc.fill_null(missing, True)
    number = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    return text, missing, number


def _numbers(text: pa.ChunkedArray, missing: pa.ChunkedArray) -> pa.ChunkedArray:
    """Cells already known to be numbers or missing, as float64 with nulls where missing."""
    cells = pc.if_else(missing, pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(cells, pa.float64())
    except pa.ArrowInvalid:
        # Arrow's parser refuses a few spellings Python's float() takes ("Infinity" in some
        # versions); those columns are rare, so they go through Python.
        values = [None if cell is None else float(cell) for cell in cells.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.float64())])


def _first(mask: pa.ChunkedArray) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def empty_float32(rows: int, columns: int) -> np.ndarray:
    """An uninitialised float32 (rows, columns) array in pyarrow's memory pool.

    The pool reuses the memory pyarrow has just freed (blocks of parsed text), which malloc
    cannot: the peak of a read is then about the result plus what pyarrow holds at once.
    """
    return np.frombuffer(pa.allocate_buffer(rows * columns * 4), np.float32).reshape(rows, columns)


def _filled(columns: list[pa.ChunkedArray], rows: int) -> np.ndarray:
    """One float32 (rows, features) array, missing cells NaN, each Arrow column released once copied.

    Filled column by column (a strided write per column) rather than stacked at the end, so the
    peak is the result plus one column, not the result twice.
    """
    X = empty_float32(rows, len(columns))
    for j in range(len(columns)):
        column, columns[j] = columns[j], None
        start = 0
        for chunk in column.chunks:
            X[start:start + len(chunk), j] = chunk.to_numpy(zero_copy_only=False)  # nulls become NaN
            start += len(chunk)
        del column
    return X


# ----------------------------------------------------------------------------- targets


def targets_of(columns: list[pa.ChunkedArray], plan: Columns, origin: Origin) -> np.ndarray | None:
    """``y`` from the target columns (in ``plan.targets`` order), or None when there are none."""
    if not plan.targets:
        return None
    if not plan.multi:
        return _target(columns[0], plan.targets[0], origin)
    y = np.empty((len(columns[0]), len(columns)), np.float64)
    for j, (column, name) in enumerate(zip(columns, plan.targets)):
        y[:, j] = _target_numbers(column, name, origin)
    return y


def _target(column: pa.ChunkedArray, name: str, origin: Origin) -> np.ndarray:
    type_ = column.type
    if is_numeric(type_) and not pa.types.is_null(type_):
        _refuse_missing(column, pc.is_null(column), name, origin)
        if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
            return np.asarray(pc.cast(column, pa.float64()).to_numpy(), np.float64)
        return np.asarray(pc.cast(column, pa.int64()).to_numpy(), np.int64)
    if not is_text(type_):
        raise NetfitError(f"{origin.source!r}: target column {name!r} holds {type_} values; a target must hold "
                          "numbers or class labels")
    text, missing, _ = _parse_marks(column)
    _refuse_missing(text, missing, name, origin)
    cells = text.to_numpy(zero_copy_only=False)
    try:
        # Bytes take a quarter of the memory of str, and numbers and most labels are ASCII.
        return _typed_target(cells.astype(np.bytes_))
    except UnicodeEncodeError:
        return _typed_target(cells.astype(np.str_))


def _target_numbers(column: pa.ChunkedArray, name: str, origin: Origin) -> np.ndarray:
    """One of several target columns: numbers only."""
    if is_numeric(column.type) and not pa.types.is_null(column.type):
        _refuse_missing(column, pc.is_null(column), name, origin)
        return pc.cast(column, pa.float64()).to_numpy()
    if not is_text(column.type):
        raise NetfitError(f"{origin.source!r}: target column {name!r} holds {column.type} values; with several "
                          "targets every target column must hold numbers")
    text, missing, number = _parse_marks(column)
    _refuse_missing(text, missing, name, origin)
    bad = pc.invert(number)
    if pc.any(bad).as_py():
        row = _first(bad)
        raise NetfitError(f"{origin.source!r}: non-numeric target value {text[row].as_py()!r} at "
                          f"{origin.locate(origin.start + row, name)}; with several targets (data.target is a list) "
                          "every target column must hold numbers; predict text labels with one target column")
    return _numbers(text, missing).to_numpy()


def _refuse_missing(column: pa.ChunkedArray, missing: pa.ChunkedArray, name: str, origin: Origin) -> None:
    if pc.any(missing).as_py():
        row = _first(missing)
        raise NetfitError(f"{origin.source!r}: missing target value at {origin.locate(origin.start + row, name)}; "
                          "fill it in or drop the row")


def _typed_target(text: np.ndarray) -> np.ndarray:
    """int64 when every cell is an integer literal, float64 when every cell is a number, else the text as str.

    The dtype says what the file holds, and the caller reads it: "25" is a count or a class id,
    "25.0" a measurement. A cell that is not an integer fails the int64 parse at once, so a float
    or text column costs one extra parse of its first cells only.
    """
    try:
        return text.astype(np.int64)
    except ValueError:
        pass
    except OverflowError:
        return text.astype(np.float64)  # integers beyond int64 are no class ids; keep them as numbers
    try:
        return text.astype(np.float64)
    except ValueError:
        return text.astype(np.str_)  # class labels; the caller maps them to ids


# ----------------------------------------------------------------------------- whole tables


def check_schema(schema: pa.Schema, plan: Columns, source: str) -> None:
    """Refuse, from a file's schema alone, columns no reading can use: before any row is read."""
    for name in plan.features:
        type_ = schema.field(name).type
        if not (is_numeric(type_) or is_text(type_)):
            raise NetfitError(f"{source!r}: column {name!r} holds {type_} values, which netfit cannot use as a "
                              f"feature; set data.columns.{name} = \"ignore\" to leave it out, or store it as numbers "
                              "or text")
    for name in plan.targets:
        type_ = schema.field(name).type
        if not ((is_numeric(type_) and not pa.types.is_null(type_)) or is_text(type_)):
            raise NetfitError(f"{source!r}: target column {name!r} holds {type_} values; a target must hold "
                              "numbers or class labels")


def table_of(table: pa.Table, plan: Columns, origin: Origin) -> Table:
    """The ``Table`` of an Arrow table that holds (at least) the planned columns, stored types kept."""
    y = targets_of([table[name] for name in plan.targets], plan, origin)
    rows, columns = table.num_rows, [table[name] for name in plan.features]
    del table  # ``features_of`` frees each column once copied; nothing else may hold them
    return Table(features_of(columns, rows, plan, origin, typo_check=False), y, list(plan.features), plan.ignored)


def rechunked(batches, schema: pa.Schema, chunk_rows: int):
    """Arrow tables of exactly ``chunk_rows`` rows (the last one fewer) from batches of any size."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows).combine_chunks()
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending, schema=schema)
