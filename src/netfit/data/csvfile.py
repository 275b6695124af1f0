"""CSV files: the header read and checked by netfit, the rows parsed by pyarrow.csv, bad cells named by netfit.

Reading a CSV file takes three steps:

1. The header row (or, without one, the first row) is read in Python: its encoding (a
   byte-order mark, else ``data.encoding``, else UTF-8), its names (no duplicates, no empty
   ones, not a row of numbers: whether the first row names the columns is said by the caller,
   ``data.header``, never guessed) and which columns are features, targets or ignored.
2. pyarrow.csv parses the rows, on every core, into typed columns. The first block (1 MB) is
   parsed first to type each feature column: numbers are then read straight into float32 (never
   float64), text as strings; targets are always read as text and typed by netfit (int64,
   float64 or labels, ``convert``). A whole file of numbers is streamed into one float32 array
   sized by its line breaks, which are counted, and the result checked against free memory,
   before any row is parsed.
3. When pyarrow fails (a ragged row, bytes that do not decode, a NUL character, a cell that is
   not a number in a column read as numbers), the file is read again in Python, row by row, only
   to find and name the first bad line and cell: pyarrow's messages name neither the file's line
   (it counts rows) nor what to do. The same Python reader gives the line of a bad cell that
   ``convert`` found in a parsed column. It is never the normal path: it is many times slower.

Missing cells (empty, NA, N/A, null, nan, in any case) become NaN in a numeric column and null
in a text one; netfit decides later what to do with them (``data.missing``).
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import NetfitError
from ..files import describe_bytes, open_regular, require_memory
from .columns import Columns, listing, plan_columns
from .convert import MISSING, Origin, empty_float32, features_of, is_numeric, is_text, rechunked, targets_of
from .table import ReadOptions, Table

__all__ = ["csv_tables", "csv_columns"]

# Bytes per block: decoded at a time by the Python reader, parsed per task by pyarrow (whose
# per-block cost is already small at 1 MB; larger blocks in flight cost memory and gain nothing).
_BLOCK = 1 << 20
# A longer line is no table row (a million columns of 60 characters each): refusing it bounds the
# memory a file without line breaks can take.
_MAX_LINE = 1 << 26
# What pyarrow reads as null: netfit's missing markers, in the spellings files use. A cell with
# spaces around one (" NA ") is read as text and recognised by ``convert``.
_NULLS = sorted({spelling for cell in MISSING for spelling in (cell, cell.upper(), cell.capitalize())}
                | {"NaN", "N/A", "Null"})

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
_MEMORY_FIX = "predict reads a file in chunks; to train on it, use a sample of its rows or a machine with more memory"


def csv_columns(path: str | Path, *, header: bool = True, encoding: str | None = None,
                names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The column names of a CSV file: its header row, or ``names``/f0, f1, ... when it has none."""
    options = ReadOptions(header=header, encoding=encoding, names=None if names is None else tuple(names))
    with open_regular(path, "data file") as handle:
        return _Head.read(handle, str(path), options).names


def csv_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    """The tables of a CSV file: one for the whole file (``chunk_rows`` None), else at most ``chunk_rows`` rows each.

    Targets are typed by ``convert``; in chunks each chunk types its own, the whole-file table
    over every row. Feature columns are typed from the first block of the file (in chunks, once
    for all chunks); a whole-file read types a column again over every row when text turns up
    further down in a column of numbers.
    """
    source = str(path)
    with open_regular(path, "data file") as handle:
        head = _Head.read(handle, source, options)
        plan = plan_columns(head.names, options, source)
        reader = _Reader(path, handle, head, plan, options)
        if chunk_rows is None:
            yield reader.whole()
        else:
            yield from reader.chunks(chunk_rows)


# ----------------------------------------------------------------------------- the header, in Python


class _Head(NamedTuple):
    """What the first row of a CSV file says, and where its data rows start."""

    names: list[str]
    codec: str  # the text encoding of the rows
    offset: int  # bytes before the first data row
    has_header: bool

    @staticmethod
    def read(handle: BinaryIO, source: str, options: ReadOptions) -> "_Head":
        codec, skip = _codec(handle, options.encoding)
        consumed: list[str] = []

        def recorded(lines):
            for line in lines:
                consumed.append(line)
                yield line

        reader = csv.reader(recorded(_lines(handle, source, options.encoding)))
        try:
            row = next((row for row in reader if row), None)  # blank lines hold no row
        except csv.Error as err:
            raise NetfitError(f"{source!r} line {reader.line_num} is not valid CSV ({err}); fix that line") from None
        names = _column_names(row, reader.line_num, source, options)
        if not options.header:
            consumed.clear()  # the first row is data: pyarrow parses it with the others
        # The bytes of what was decoded: the encoder of the file's own encoding gives them back
        # exactly (less any byte-order mark the encoder would write, hence the empty string).
        offset = skip + sum(len(line.encode(codec)) - len("".encode(codec)) for line in consumed)
        # pyarrow decodes UTF-8 itself; any other name makes it decode through Python's codecs.
        return _Head(names, "utf8" if codecs.lookup(codec).name == "utf-8" else codec, offset, options.header)


def _codec(handle: BinaryIO, encoding: str | None) -> tuple[str, int]:
    """The encoding of the file and the bytes of its byte-order mark, from its first bytes."""
    head = handle.read(4)
    handle.seek(0)
    for mark, codec, _ in _BOMS:
        if head.startswith(mark):
            return codec, len(mark)
    return encoding or "utf-8", 0


def _column_names(row: list[str] | None, line: int, source: str, options: ReadOptions) -> list[str]:
    if not options.header:
        if row is None:
            raise NetfitError(f"CSV file {source!r} is empty; it has no rows")
        if options.names is None:
            return [f"f{i}" for i in range(len(row))]
        names = list(options.names)
        if len(set(names)) != len(names):
            raise ValueError(f"names {names} repeat a name")
        if len(row) != len(names):
            raise NetfitError(f"{source!r} line {line} has {len(row)} fields but {len(names)} column "
                              f"names were given ({listing(names)}); give a file with those columns")
        return names
    if options.names is not None:
        raise ValueError("names are for files without a header row (header=False)")
    if row is None:
        raise NetfitError(f"CSV file {source!r} is empty; it needs a header row with column names")
    names = [name.strip() for name in row]
    if all(_is_number(name) for name in names):
        raise NetfitError(f"the first row of {source!r} looks like data, not column names ({listing(names, 6)}); "
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
    return names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- the rows, in pyarrow


class _Reader:
    """The data rows of one open CSV file, parsed by pyarrow with the column types of its first block."""

    def __init__(self, path: Path, handle: BinaryIO, head: _Head, plan: Columns, options: ReadOptions) -> None:
        self.path, self.handle, self.head, self.plan, self.options = path, handle, head, plan, options
        self.source = str(path)
        self.origin = Origin(self.source, self._locate)
        self.types: dict[str, pa.DataType] = {}  # none yet: the first block is read with pyarrow's typing
        sample = self._first_block()
        self.sample_rows = sample.num_rows
        self.kinds = self._kinds(sample)  # feature -> "numeric" or "string"
        # How pyarrow reads each column: a numeric feature typed as numbers in the first block
        # straight into float32 (or bool), everything else as text for ``convert``.
        self.types = {name: pa.string() for name in plan.targets}
        for name, kind in self.kinds.items():
            sampled = sample.schema.field(name).type
            numeric = kind == "numeric" and is_numeric(sampled)
            self.types[name] = (pa.bool_() if pa.types.is_boolean(sampled) else pa.float32()) if numeric \
                else pa.string()

    # ------------------------------------------------------------------ reading

    def whole(self) -> Table:
        rows = self._count_rows()
        numbers = rows * (4 * len(self.plan.features) + 8 * len(self.plan.targets))
        # Counted before any row is parsed, so a file that cannot fit is refused in a second, not
        # by running out of memory halfway; a file with text columns holds pyarrow's columns and
        # the result together for a moment: twice the result.
        require_memory(2 * numbers, f"reading {self.source!r} whole (about {describe_bytes(numbers)} of numbers)",
                       _MEMORY_FIX)
        if all(self.types[name] != pa.string() for name in self.plan.features):
            try:
                return self._numbers_whole(rows)
            except _Retype:
                pass
        try:
            table = self._read_all(self.types)
        except _Retype:
            # A column typed as numbers by its first block holds text further down: read the
            # feature columns again with pyarrow's typing over the whole file, and let
            # ``convert`` decide whether that text is categories or typos.
            retyped = {name: type_ for name, type_ in self.types.items()
                       if name in self.plan.targets or type_ == pa.string()}
            retyped.update({name: pa.string() for name, kind in self.plan.declared.items() if kind == "numeric"})
            try:
                table = self._read_all(retyped)
            except _Retype as again:
                raise self._fault(again.__cause__) from None
        return self._table(table, typo_check=True)

    def _numbers_whole(self, rows: int) -> Table:
        """A file whose features are all numbers, streamed batch by batch into one float32 array.

        Streaming, rather than pyarrow's whole-table read, never holds pyarrow's columns and the
        result at once: the peak is the result plus a few blocks. ``rows`` is an upper bound.
        """
        features = self.plan.features
        X = empty_float32(rows, len(features))
        targets: list[pa.RecordBatch] = []
        done = 0
        for batch in self._batches(self.types):
            if done + batch.num_rows > len(X):  # fewer line breaks than rows: an encoding without 0x0A
                X = np.concatenate([X, empty_float32(max(len(X), batch.num_rows), len(features))])
            for j, name in enumerate(features):
                column = batch.column(name)
                if not pa.types.is_floating(column.type):
                    column = pc.cast(column, pa.float32())  # booleans
                X[done:done + batch.num_rows, j] = column.to_numpy(zero_copy_only=False)  # nulls become NaN
            targets.append(batch.select(self.plan.targets))
            done += batch.num_rows
        if done == 0:
            self._refuse_empty()
        table = pa.Table.from_batches(targets, pa.schema([(name, pa.string()) for name in self.plan.targets]))
        self._check_text(table)
        y = targets_of([table[name] for name in self.plan.targets], self.plan, self.origin)
        return Table(X[:done], y, list(features), self.plan.ignored)

    def _read_all(self, types: dict[str, pa.DataType]) -> pa.Table:
        try:
            return pacsv.read_csv(self._rows(), read_options=self._read_options(_BLOCK), parse_options=_PARSE,
                                  convert_options=self._convert_options(types))
        except (pa.ArrowInvalid, UnicodeDecodeError) as err:
            raise self._retype_or_fault(err) from err

    def _batches(self, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
        stream = pacsv.open_csv(self._rows(), read_options=self._read_options(_BLOCK), parse_options=_PARSE,
                                convert_options=self._convert_options(types))
        while True:
            try:
                yield stream.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, UnicodeDecodeError) as err:
                raise self._retype_or_fault(err) from err

    def _retype_or_fault(self, err: Exception) -> Exception:
        """A cell that is not a number in a column read as numbers may be a category: the caller decides."""
        if "conversion error" in str(err):
            return _Retype()
        return self._fault(err)

    def _count_rows(self) -> int:
        """At least the number of data rows: the line breaks after the header, plus one."""
        self.handle.seek(self.head.offset)
        newlines = returns = 0
        while block := self.handle.read(_BLOCK):
            count = block.count(b"\n")
            newlines += count
            if not count:  # old Mac files end lines with \r alone; counting \r too would cost a second pass
                returns += block.count(b"\r")
        return max(newlines, returns) + 1

    def chunks(self, chunk_rows: int) -> Iterator[Table]:
        # Streaming fixes every column's type up front: a text column stays text in every chunk.
        declared = {**self.plan.declared, **{name: ("numeric" if kind == "numeric" else "categorical")
                                             for name, kind in self.kinds.items()}}
        plan = self.plan._replace(declared=declared)
        schema = pa.schema([(name, self.types[name]) for name in self.plan.selected])
        start = 0
        try:
            for table in rechunked(self._batches(self.types), schema, chunk_rows):
                yield self._table(table, typo_check=False, plan=plan, start=start)
                start += table.num_rows
        except _Retype as err:  # a later cell is not a number in a column its first block typed as numbers
            raise self._fault(err.__cause__) from None
        if start == 0:
            self._refuse_empty()

    def _table(self, table: pa.Table, *, typo_check: bool, plan: Columns | None = None, start: int = 0) -> Table:
        plan = plan or self.plan
        if table.num_rows == 0:
            self._refuse_empty()
        self._check_text(table)
        origin = self.origin._replace(start=start)
        y = targets_of([table[name] for name in plan.targets], plan, origin)
        rows, columns = table.num_rows, [table[name] for name in plan.features]
        del table  # ``features_of`` frees each column once copied; nothing else may hold them
        return Table(features_of(columns, rows, plan, origin, typo_check=typo_check), y, list(plan.features),
                     plan.ignored)

    def _check_text(self, table: pa.Table) -> None:
        for field in table.schema:
            # pyarrow types text that is not UTF-8 as binary and keeps NUL characters in text:
            # both mean the file is not text in its encoding, which the Python reader names.
            if pa.types.is_binary(field.type) or (
                    is_text(field.type) and pc.any(pc.match_substring(table[field.name], "\x00")).as_py()):
                raise self._fault(None)

    def _refuse_empty(self):
        raise NetfitError(f"{self.source!r} has no rows: only a header row ({listing(self.head.names, 6)}); "
                          "add data rows below it")

    def _first_block(self) -> pa.Table:
        """The rows of the file's first block, typed by pyarrow (declared text stays text)."""
        types = {name: pa.string() for name in self.plan.targets}
        # A column declared numeric keeps pyarrow's typing, so that true/false cells are read as
        # booleans, as they were when the column's type was inferred (a run's columns are declared).
        types.update({name: pa.string() for name, kind in self.plan.declared.items() if kind != "numeric"})
        try:
            stream = pacsv.open_csv(self._rows(), read_options=self._read_options(_BLOCK), parse_options=_PARSE,
                                    convert_options=self._convert_options(types))
            try:
                batches = [stream.read_next_batch()]
            except StopIteration:
                batches = []
            return pa.Table.from_batches(batches, stream.schema)
        except (pa.ArrowInvalid, UnicodeDecodeError) as err:
            raise self._fault(err) from None

    def _kinds(self, sample: pa.Table) -> dict[str, str]:
        """Each feature: "numeric" or "string", from data.columns or the first block's cells."""
        kinds = {}
        for name in self.plan.features:
            declared = self.plan.declared.get(name)
            if declared is not None:
                kinds[name] = "numeric" if declared == "numeric" else "string"
                continue
            type_ = sample.schema.field(name).type
            if pa.types.is_binary(type_):
                raise self._fault(None)
            if is_numeric(type_):
                kinds[name] = "numeric"
            elif is_text(type_) and sample.num_rows:
                # Numbers with a few typos are refused now; numbers read as text (" NA ") are numbers.
                column = features_of([sample[name]], sample.num_rows, self.plan._replace(features=[name], declared={}), self.origin,
                                     typo_check=True)
                kinds[name] = "numeric" if isinstance(column, np.ndarray) else "string"
            else:
                kinds[name] = "string"  # text, and dates or times: CSV cells are text
        return kinds

    def _rows(self) -> pa.PythonFile:
        self.handle.seek(self.head.offset)
        return pa.PythonFile(self.handle, mode="r")

    def _read_options(self, block: int) -> pacsv.ReadOptions:
        return pacsv.ReadOptions(column_names=self.head.names, block_size=block, encoding=self.head.codec,
                                 use_threads=True)

    def _convert_options(self, types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
        return pacsv.ConvertOptions(include_columns=self.plan.selected, column_types=types, null_values=_NULLS,
                                    strings_can_be_null=True, quoted_strings_can_be_null=True)

    # ------------------------------------------------------------------ naming what went wrong, in Python

    def _fault(self, err: Exception | None) -> NetfitError:
        """The first fault of the file, found by reading it again in Python: a NetfitError to raise."""
        numeric = [self.head.names.index(name) for name, type_ in self.types.items()
                   if not pa.types.is_string(type_) and name in self.plan.features]
        seen = False
        for batch_start, (row, line) in enumerate(self._python_rows()):
            seen = True
            for column in numeric:
                text = row[column]
                if text.strip().lower() in MISSING or _is_number(text):
                    continue
                name = self.head.names[column]
                declared = self.plan.declared.get(name) == "numeric"
                fix = (f'fix the cell (data.columns.{name} = "numeric" says it holds numbers)' if declared
                       else f'fix the cell, or set data.columns.{name} = "categorical" if the column holds categories')
                return NetfitError(f"{self.source!r}: non-numeric value {text!r} at line {line} (data row "
                                   f"{batch_start + 1}), column {name!r}; {fix}")
        if not seen:  # pyarrow's "Empty CSV file": a header row and nothing below it
            self._refuse_empty()
        reason = str(err).strip().splitlines()[0] if err is not None else "unknown"
        return NetfitError(f"{self.source!r} could not be read as CSV ({reason}); check the file")

    def _locate(self, row: int, name: str) -> str:
        for index, (_, line) in enumerate(self._python_rows()):
            if index == row:
                return f"line {line} (data row {row + 1}), column {name!r}"
        return f"data row {row + 1}, column {name!r}"

    def _python_rows(self) -> Iterator[tuple[list[str], int]]:
        """Every data row with its line, from a fresh read; a row of the wrong width or a bad byte raises."""
        with open_regular(self.path, "data file") as handle:
            reader = csv.reader(_lines(handle, self.source, self.options.encoding))
            width = len(self.head.names)
            counted = "the header has" if self.head.has_header else "the first row has"
            try:
                if self.head.has_header:
                    next((row for row in reader if row), None)
                for row in reader:
                    if not row:  # a blank line, e.g. at the end of the file
                        continue
                    if len(row) != width:
                        raise NetfitError(f"{self.source!r} line {reader.line_num} has {len(row)} fields but "
                                          f"{counted} {width}; fix that line (a missing or extra comma?)")
                    yield row, reader.line_num
            except csv.Error as err:
                raise NetfitError(f"{self.source!r} line {reader.line_num} is not valid CSV ({err}); "
                                  "fix that line") from None


class _Retype(Exception):
    """pyarrow met a cell that is not a number in a column read as numbers."""


# Quoted cells may hold line breaks (a review over several lines), as Python's csv allows; on a
# 92 MB file of numbers pyarrow parses as fast with this on as off.
_PARSE = pacsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True, newlines_in_values=True,
                            ignore_empty_lines=True)


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


