"""CSV files: decoded by their byte-order mark or data.encoding, with an explicit header, parsed in batches.

One parser serves both the whole-file reader and the chunked one. Rows are read in batches of a
bounded number of cells and each batch is converted to float64 at once, so the Python strings a
batch needs (one object per cell, about 60 bytes each) never pile up for the whole file: reading
a file costs its float64 result, twice while the batches are joined, plus one batch.

The encoding comes from a byte-order mark when the file starts with one (UTF-8, UTF-16 or UTF-32),
else from ``data.encoding``, else UTF-8. Bytes that do not decode, and NUL characters (what UTF-16
without a byte-order mark, or a binary file, looks like as UTF-8), are refused with their line and
column. Whether the first row names the columns is said by the caller (``data.header``), never
guessed: a header row made only of numbers is refused as the data row it probably is.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import os
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

import numpy as np

from ..errors import NetfitError
from ..files import describe_bytes, open_regular, require_memory
from ..registry import nearest
from .table import ReadOptions, Table

__all__ = ["csv_tables", "csv_columns"]

# Cells that mean "no value", compared after strip() and lower().
_MISSING = frozenset({"", "na", "n/a", "nan", "null"})

_BLOCK = 1 << 20  # bytes decoded at a time
# A longer line is no table row (a million columns of 60 characters each): refusing it bounds the
# memory a file without line breaks can take.
_MAX_LINE = 1 << 26
# Cells per parsed batch: about 16 MB of Python strings, whatever the width of the file.
_BATCH_CELLS = 1 << 18

# Longest marks first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
_ENCODING_FIX = ('set data.encoding (--encoding on evaluate and predict; e.g. "latin-1" or "cp1252"), or save '
                 'the file as UTF-8')
_NO_HEADER_FIX = "if the file has no header row, set data.header = false (--no-header on evaluate/predict)"


def csv_columns(path: str | Path, *, header: bool = True, encoding: str | None = None,
                names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The column names of a CSV file: its header row, or ``names``/f0, f1, ... when it has none."""
    source = str(path)
    options = ReadOptions(header=header, encoding=encoding, names=None if names is None else tuple(names))
    with open_regular(path, "data file") as handle:
        reader = csv.reader(_lines(handle, source, encoding))
        try:
            return _column_names(reader, source, options)[0]
        except csv.Error as err:
            raise NetfitError(f"{source!r} line {reader.line_num} is not valid CSV ({err}); fix that line") from None


def csv_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    """The tables of a CSV file: one for the whole file (``chunk_rows`` None), else at most ``chunk_rows`` rows each.

    A single target column comes back as int64 when every cell is an integer literal ("25",
    "-3"), float64 when every cell is a number, else as str labels. In chunks each chunk decides
    for itself; the whole-file table decides over every row. Several target columns must all be
    numbers and come back as float64 of shape (rows, targets).
    """
    source = str(path)
    with open_regular(path, "data file") as handle:
        reader = csv.reader(_lines(handle, source, options.encoding))
        try:
            names, first = _column_names(reader, source, options)
            plan = _plan(names, options, source)
            batches = _batches(reader, source, names, first, options.header, chunk_rows)
            if chunk_rows is None:
                size = os.fstat(handle.fileno()).st_size
                yield _whole_table(batches, plan, names, source, lambda: handle.tell() / max(size, 1))
            else:
                for batch in batches:
                    X, y = _convert(batch, plan, names, source)
                    yield Table(X, None if y is None or plan.multi else _typed_target(y), plan.feature_names,
                                plan.ignored)
        except csv.Error as err:
            raise NetfitError(f"{source!r} line {reader.line_num} is not valid CSV ({err}); fix that line") from None


# ----------------------------------------------------------------------------- bytes to lines


def _lines(handle: BinaryIO, source: str, encoding: str | None) -> Iterator[str]:
    """The lines of the file, terminators kept (as csv wants them), decoded a block at a time."""
    head = handle.read(4)
    codec, skip, bom = next(((codec, len(mark), name) for mark, codec, name in _BOMS if head.startswith(mark)),
                            (encoding or "utf-8", 0, None))
    handle.seek(skip)
    try:
        info = codecs.lookup(codec)
    except LookupError:
        raise NetfitError(f"data.encoding = {codec!r} is not a text encoding Python knows; "
                          "try utf-8, latin-1, cp1252 or utf-16") from None
    # codecs.lookup also knows base64, hex, rot13...: they turn bytes into bytes, not into text.
    if not getattr(info, "_is_text_encoding", True):
        raise NetfitError(f"data.encoding = {codec!r} is not a text encoding; try utf-8, latin-1, cp1252 or utf-16")
    decoder = info.incrementaldecoder("strict")
    done = 0  # lines handed out, for the line number of a bad byte
    fed = skip  # file bytes given to the decoder before this block
    pending = ""  # the start of a line whose end is in the next block
    while True:
        block = handle.read(_BLOCK)
        state = decoder.getstate()
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as err:
            raise _undecodable(err, codec, state, fed, pending, done, source, bom, encoding) from None
        fed += len(block)
        text = pending + text
        nul = text.find("\x00")
        if nul >= 0:
            line, column = _position(text[:nul], done)
            raise _not_text(source, bom, encoding,
                            f"line {line}, column {column} holds a NUL character (UTF-16 without a byte-order "
                            'mark? then data.encoding = "utf-16-le")')
        # newline="" splits at \n, \r\n and \r alike and keeps them, as csv.reader needs.
        lines = io.StringIO(text, newline="").readlines()
        # A line ending in \r may go on with \n in the next block; keep it until that is known.
        pending = lines.pop() if block and lines and not lines[-1].endswith("\n") else ""
        if len(pending) > _MAX_LINE:
            raise NetfitError(f"{source!r} line {done + len(lines) + 1} runs on for more than {_MAX_LINE:,} "
                              "characters without a line break; check that it is a CSV file")
        for line in lines:
            done += 1
            yield line
        if not block:
            return


def _position(before: str, done: int) -> tuple[int, int]:
    """Line and column (both 1-based) of the character after ``before``, ``done`` lines into the file."""
    breaks = before.count("\n") + before.count("\r") - before.count("\r\n")
    start = max(before.rfind("\n"), before.rfind("\r")) + 1
    return done + breaks + 1, len(before) - start + 1


def _undecodable(err: UnicodeDecodeError, codec: str, state: tuple, fed: int, pending: str, done: int, source: str,
                 bom: str | None, encoding: str | None) -> NetfitError:
    data, buffered = err.object, state[0] if isinstance(state[0], bytes) else b""
    # The decoder raised on the bytes it buffered from the last block followed by this one.
    redecoder = codecs.getincrementaldecoder(codec)("strict")
    try:
        redecoder.setstate((b"", state[1]))
        before = pending + redecoder.decode(data[:err.start], False)
    except (UnicodeDecodeError, TypeError, ValueError):
        before = pending
    line, column = _position(before, done)
    offset = fed - len(buffered) + err.start
    byte = data[err.start:err.start + 1].hex().upper()
    return _not_text(source, bom, encoding,
                     f"byte 0x{byte} at line {line}, column {column} (byte {offset} of the file) does not decode")


def _not_text(source: str, bom: str | None, encoding: str | None, what: str) -> NetfitError:
    if bom is not None:
        return NetfitError(f"{source!r} starts with a {bom} byte-order mark but is not {bom} text: {what}; the mark "
                           f"decides the encoding, so save the file again as {bom} or UTF-8")
    if encoding is not None:
        return NetfitError(f"{source!r} is not {encoding!r} text (data.encoding): {what}; {_ENCODING_FIX}")
    return NetfitError(f"{source!r} is not UTF-8 text: {what}; {_ENCODING_FIX}")


# ----------------------------------------------------------------------------- header and columns


class _Plan(NamedTuple):
    """Which columns of the file are read, as what."""

    features: list[int]
    targets: list[int]
    multi: bool  # data.target is a list: y is (rows, targets), numbers only
    feature_names: list[str]
    ignored: tuple[str, ...]


def _next_row(reader) -> list[str] | None:
    return next((row for row in reader if row), None)  # blank lines hold no row


def _column_names(reader, source: str, options: ReadOptions) -> tuple[list[str], tuple[list[str], int] | None]:
    """The file's column names, and its first data row with its line when the file has no header row."""
    row = _next_row(reader)
    if not options.header:
        if row is None:
            raise NetfitError(f"CSV file {source!r} is empty; it has no rows")
        if options.names is None:
            return [f"f{i}" for i in range(len(row))], (row, reader.line_num)
        names = list(options.names)
        if len(set(names)) != len(names):
            raise ValueError(f"names {names} repeat a name")
        if len(row) != len(names):
            raise NetfitError(f"{source!r} line {reader.line_num} has {len(row)} fields but {len(names)} column "
                              f"names were given ({_listing(names)}); give a file with those columns")
        return names, (row, reader.line_num)
    if options.names is not None:
        raise ValueError("names are for files without a header row (header=False)")
    if row is None:
        raise NetfitError(f"CSV file {source!r} is empty; it needs a header row with column names")
    names = [name.strip() for name in row]
    if all(_is_number(name) for name in names):
        raise NetfitError(f"the first row of {source!r} looks like data, not column names ({_listing(names, 6)}); "
                          f"{_NO_HEADER_FIX}")
    unnamed = [i + 1 for i, name in enumerate(names) if not name]
    if unnamed:
        raise NetfitError(f"column {unnamed[0]} of {source!r} has no name in the header row; name every column, "
                          f"or {_NO_HEADER_FIX}")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise NetfitError(f"{source!r} names column {name!r} twice in its header row (columns {seen[name] + 1} "
                              f"and {i + 1}); give every column its own name")
        seen[name] = i
    return names, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _plan(names: list[str], options: ReadOptions, source: str) -> _Plan:
    targets = []
    for target in options.targets:
        if target not in names:
            hint = nearest(target, names)
            did_you_mean = f"did you mean {hint!r}? " if hint else ""
            raise NetfitError(
                f"{source!r} has no column {target!r}; {did_you_mean}columns: {_listing(names)}; "
                f"{_separator_hint(names) or 'set data.target'}"
            )
        targets.append(names.index(target))
    if options.features is None:
        features = [i for i in range(len(names)) if i not in targets]
    else:
        wanted = list(options.features)
        if len(set(wanted)) != len(wanted) or set(wanted) & set(options.targets):
            raise ValueError(f"features {wanted} repeat a column or include a target")
        for name in wanted:
            if name not in names:
                hint = nearest(name, names)
                did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
                raise NetfitError(
                    f"{source!r} has no feature column {name!r}{did_you_mean}; its columns are {_listing(names)}, "
                    f"and the features to read are {_listing(wanted)}; "
                    f"{_separator_hint(names) or 'add or rename that column'}"
                )
        features = [names.index(name) for name in wanted]
    used = set(features) | set(targets)
    ignored = tuple(name for i, name in enumerate(names) if i not in used)
    return _Plan(features, targets, not isinstance(options.target, str) and options.target is not None,
                 [names[i] for i in features], ignored)


def _separator_hint(names: list[str]) -> str | None:
    """What to say when a header holds one name with semicolons or tabs in it: another separator."""
    for separator, called in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
        if len(names) == 1 and separator in names[0]:
            return (f"its columns seem to be separated by {called}, but netfit reads comma-separated files: "
                    "save it with commas")
    return None


def _listing(names: list[str], limit: int = 12) -> str:
    """``a, b, c`` for messages; a long list is cut, so that one line stays one readable line."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... ({len(names)} in all)"


# ----------------------------------------------------------------------------- rows to arrays


class _Batch(NamedTuple):
    rows: list[list[str]]
    lines: list[int]  # the file line of each row, for messages
    start: int  # data rows before this batch


def _batches(reader, source: str, names: list[str], first: tuple[list[str], int] | None, header: bool,
             chunk_rows: int | None) -> Iterator[_Batch]:
    width = len(names)
    limit = max(1, _BATCH_CELLS // max(width, 1))
    if chunk_rows is not None:
        limit = min(limit, chunk_rows)
    rows, lines = ([first[0]], [first[1]]) if first else ([], [])
    done = 0
    counted = "the header has" if header else "the first row has"
    for row in reader:
        if not row:  # a blank line, e.g. at the end of the file
            continue
        if len(row) != width:
            raise NetfitError(f"{source!r} line {reader.line_num} has {len(row)} fields but {counted} {width}; "
                              "fix that line (a missing or extra comma?)")
        rows.append(row)
        lines.append(reader.line_num)
        if len(rows) >= limit:
            yield _Batch(rows, lines, done)
            done += len(rows)
            rows, lines = [], []
    if rows:
        yield _Batch(rows, lines, done)
    elif done == 0:
        raise NetfitError(f"{source!r} has no rows: only a header row ({_listing(names, 6)}); add data rows below it")


def _convert(batch: _Batch, plan: _Plan, names: list[str], source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Features as float64, and targets: float64 (rows, k) for several, stripped text for one, or None."""
    X = _numbers(batch, plan.features, names, source, "feature")
    if not plan.targets:
        return X, None
    if plan.multi:
        return X, _numbers(batch, plan.targets, names, source, "target")
    return X, _target_text(batch, plan.targets[0], names[plan.targets[0]], source)


def _cells(rows: list[list[str]], columns: list[int], width: int) -> Iterable[str]:
    """The cells of ``columns``, row after row."""
    if columns == list(range(width)):
        return itertools.chain.from_iterable(rows)
    if len(columns) == 1:
        return map(itemgetter(columns[0]), rows)
    if not columns:
        return ()
    return itertools.chain.from_iterable(map(itemgetter(*columns), rows))


def _numbers(batch: _Batch, columns: list[int], names: list[str], source: str, role: str) -> np.ndarray:
    rows = batch.rows
    try:
        values = np.fromiter(map(float, _cells(rows, columns, len(names))), np.float64, len(rows) * len(columns))
    except ValueError:
        _refuse_first_bad_cell(batch, columns, names, source, role)
        raise  # float() failed on a cell that float() accepts: a bug, not the user's
    values = values.reshape(len(rows), len(columns))
    missing = np.isnan(values)  # "nan" parses as NaN; the other missing markers failed above
    if missing.any():
        row, j = divmod(int(np.argmax(missing.reshape(-1))), len(columns))
        raise NetfitError(f"{source!r}: {_missing(role)} at {_where(batch, row, names[columns[j]])}; "
                          "fill it in or drop the row")
    return values


def _refuse_first_bad_cell(batch: _Batch, columns: list[int], names: list[str], source: str, role: str) -> None:
    for row, cells in enumerate(batch.rows):
        for column in columns:
            text = cells[column]
            if text.strip().lower() in _MISSING:
                raise NetfitError(f"{source!r}: {_missing(role)} at {_where(batch, row, names[column])}; "
                                  "fill it in or drop the row")
            try:
                float(text)
            except ValueError:
                if role == "feature":
                    fix = (f"feature columns must hold numbers, so encode or drop column {names[column]!r}, "
                           "or make it the target with data.target")
                else:
                    fix = ("with several targets (data.target is a list) every target column must hold numbers; "
                           "predict text labels with one target column")
                raise NetfitError(f"{source!r}: non-numeric {'target ' if role == 'target' else ''}value {text!r} "
                                  f"at {_where(batch, row, names[column])}; {fix}") from None


def _missing(role: str) -> str:
    return "missing value" if role == "feature" else "missing target value"


def _where(batch: _Batch, row: int, name: str) -> str:
    return f"line {batch.lines[row]} (data row {batch.start + row + 1}), column {name!r}"


def _target_text(batch: _Batch, column: int, name: str, source: str) -> np.ndarray:
    cells = [row[column].strip() for row in batch.rows]
    missing = next((row for row, cell in enumerate(cells) if cell.lower() in _MISSING), None)
    if missing is not None:
        raise NetfitError(f"{source!r}: missing target value at {_where(batch, missing, name)}; "
                          "fill it in or drop the row")
    try:
        # Bytes take a quarter of the memory of str, and numbers and most labels are ASCII.
        return np.array(cells, dtype=np.bytes_)
    except UnicodeEncodeError:
        return np.array(cells, dtype=np.str_)


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


def _whole_table(batches: Iterator[_Batch], plan: _Plan, names: list[str], source: str,
                 done: Callable[[], float]) -> Table:
    """Every batch joined into one table; ``done()`` is the share of the file read so far."""
    features, targets = [], []
    for batch in batches:
        X, y = _convert(batch, plan, names, source)
        if not features:
            # Projected from the first batch, so a file that cannot fit is refused in a second, not
            # by running out of memory halfway; the join at the end needs the result twice.
            projected = int((X.nbytes + (0 if y is None else y.nbytes)) / max(done(), 1e-9))
            require_memory(2 * projected, f"reading {source!r} whole (about {describe_bytes(projected)} of "
                                          "numbers)", "predict reads a file in chunks; to train on it, use a sample "
                                                      "of its rows or a machine with more memory")
        features.append(X)
        targets.append(y)
    # Joining holds the batches and the result at once: twice the result, the peak of a whole-file read.
    X = features[0] if len(features) == 1 else np.concatenate(features)
    del features
    y = None
    if plan.targets:
        y = targets[0] if len(targets) == 1 else np.concatenate(targets)
        del targets
        if not plan.multi:
            y = _typed_target(y)  # over every row: a first chunk of integers does not decide for a float column
    return Table(X, y, plan.feature_names, plan.ignored)
