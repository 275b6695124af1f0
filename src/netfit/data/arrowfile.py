"""Feather and Arrow IPC files (.feather, .arrow, .ipc), read by pyarrow after their row count is checked.

Feather version 2 is the Arrow IPC file format: a footer lists the record batches, so rows are
counted before any is read, and an uncompressed file is memory-mapped, so the columns that are
not read cost nothing. An Arrow IPC stream (no footer) is read batch by batch. Feather version 1
(pyarrow's old format) is read whole. Columns keep their stored types, as for Parquet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.feather as feather

from ..errors import NetfitError
from ..files import open_regular, require_memory
from .columns import plan_columns, unique_names
from .convert import Origin, check_schema, rechunked, table_of
from .table import ReadOptions, Table

__all__ = ["feather_tables"]

_FILE_MAGIC = b"ARROW1"
_V1_MAGIC = b"FEA1"
_MEMORY_FIX = "predict reads a file in chunks; to train on it, use a sample of its rows or a machine with more memory"


def feather_tables(path: Path, options: ReadOptions, chunk_rows: int | None) -> Iterator[Table]:
    """The tables of a Feather/IPC file: one for the whole file (``chunk_rows`` None), else ``chunk_rows`` rows each."""
    source = str(path)
    origin = Origin(source, lambda row, name: f"data row {row + 1}, column {name!r}")
    with open_regular(path, "data file") as handle:  # refuses FIFOs and devices before pyarrow opens the path
        magic = handle.read(len(_FILE_MAGIC))
        try:
            if magic == _FILE_MAGIC:
                reader = pa.ipc.open_file(pa.memory_map(str(path)))
                schema, rows = reader.schema, reader.count_rows()
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            elif magic.startswith(_V1_MAGIC):
                table = feather.read_table(str(path))
                schema, rows, batches = table.schema, table.num_rows, iter(table.to_batches())
            else:
                handle.seek(0)
                stream = pa.ipc.open_stream(handle)
                schema, rows, batches = stream.schema, None, iter(stream)
        except (pa.ArrowException, OSError) as err:
            raise _damaged(source, err) from None
        plan = plan_columns(unique_names(schema.names, source), options, source)
        check_schema(schema, plan, source)
        selected = pa.schema([schema.field(name) for name in plan.selected])
        if rows is not None:
            require_memory(rows * (4 * len(plan.features) + 8 * len(plan.targets)),
                           f"reading {source!r} ({rows:,} rows)", _MEMORY_FIX)
        try:
            wanted = (batch.select(plan.selected) for batch in batches)
            if chunk_rows is None:
                table = pa.Table.from_batches(list(wanted), schema=selected)
                if table.num_rows == 0:
                    raise NetfitError(f"{source!r} has no rows; give a file with data rows")
                yield table_of(table, plan, origin)
                return
            start = 0
            for table in rechunked(wanted, selected, chunk_rows):
                yield table_of(table, plan, origin._replace(start=start))
                start += table.num_rows
            if start == 0:
                raise NetfitError(f"{source!r} has no rows; give a file with data rows")
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as err:
            raise _damaged(source, err) from None


def _damaged(source: str, err: Exception) -> NetfitError:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return NetfitError(f"{source!r} is not a readable Feather or Arrow IPC file ({reason}); it is damaged, "
                       "truncated or not Feather: write it again (e.g. pyarrow.feather.write_feather), or set "
                       "data.format")
