"""Parquet files, read by pyarrow.parquet after their footer's sizes are checked against free memory.

A Parquet footer states the rows, the columns and their types, and the uncompressed size of every
column chunk, so the memory a read needs is known before any row is read. Only the feature and
target columns are read. Columns keep the types they were written with: numbers and booleans
become float32 features, strings (and dictionaries of strings) text features; any other type
(lists, structs, binary, timestamps) is refused naming the column, unless data.columns ignores it.
A file that is damaged or not Parquet at all is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import NetfitError
from ..files import describe_bytes, open_regular, require_memory
from .columns import plan_columns, unique_names
from .convert import Origin, check_schema, rechunked, table_of
from .table import ReadOptions, Table

__all__ = ["parquet_tables"]

_MEMORY_FIX = "predict reads a file in chunks; to train on it, use a sample of its rows or a machine with more memory"


def parquet_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    """The tables of a Parquet file: one for the whole file (``chunk_rows`` None), else at most ``chunk_rows`` rows each."""
    source = str(path)
    origin = Origin(source, lambda row, name: f"data row {row + 1}, column {name!r}")
    with open_regular(path, "data file") as handle:
        try:
            file = pq.ParquetFile(handle)
        except (pa.ArrowException, OSError) as err:
            raise _damaged(source, err) from None
        schema = file.schema_arrow
        plan = plan_columns(unique_names(schema.names, source), options, source)
        check_schema(schema, plan, source)
        meta = file.metadata
        if meta.num_rows == 0:
            raise NetfitError(f"{source!r} has no rows; give a file with data rows")
        stored = _stored_bytes(meta, plan.selected)
        per_row = 4 * len(plan.features) + 8 * len(plan.targets)
        try:
            if chunk_rows is None:
                result = meta.num_rows * per_row
                require_memory(sum(stored) + result, f"reading {source!r} whole ({meta.num_rows:,} rows, "
                                                     f"{describe_bytes(sum(stored))} of columns)", _MEMORY_FIX)
                yield table_of(file.read(columns=plan.selected, use_threads=True), plan, origin)
                return
            # One row group is decoded at a time: the largest one and a chunk must fit.
            require_memory(max(stored) + chunk_rows * per_row,
                           f"reading {source!r} in chunks (row groups of up to {describe_bytes(max(stored))})",
                           "write the file with smaller row groups (e.g. row_group_size=65536)")
            batches = file.iter_batches(batch_size=chunk_rows, columns=plan.selected)
            start = 0
            for table in rechunked(batches, schema=pa.schema([schema.field(n) for n in plan.selected]),
                                   chunk_rows=chunk_rows):
                yield table_of(table, plan, origin._replace(start=start))
                start += table.num_rows
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as err:
            raise _damaged(source, err) from None


def _stored_bytes(meta: pq.FileMetaData, selected: list[str]) -> list[int]:
    """Uncompressed bytes of the selected columns, per row group (at least one entry)."""
    wanted = set(selected)
    leaves = [i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] in wanted]
    return [sum(meta.row_group(g).column(i).total_uncompressed_size for i in leaves)
            for g in range(meta.num_row_groups)] or [0]


def _damaged(source: str, err: Exception) -> NetfitError:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return NetfitError(f"{source!r} is not a readable Parquet file ({reason}); it is damaged, truncated or not "
                       "Parquet: write it again (e.g. pyarrow.parquet.write_table), or set data.format")
