"""Streaming: training on a Parquet file larger than memory, reading its rows chunk by chunk.

Only a window of rows is ever held, never the file. What is held whole is one value per row:
the targets (the task, the classes and the loss need them) and the file rows of each part.

- ``ParquetRows`` reads row ranges of a Parquet file's numeric feature columns as float32.
- ``StreamedRows`` stands where a resident ``Split`` keeps its tensor ``X``: the rows of one part
  (training, validation or test), read in file order by slices (evaluation, prediction) or in a
  shuffled order by ``epoch`` (training).
- ``StreamedEpoch`` is one epoch's order. The file is cut into chunks of ``data.chunk_rows``
  rows; the chunks are permuted, taken ``data.shuffle_window`` at a time, and the rows of each
  window permuted again. Every draw comes from the run's shuffle generator, so an epoch is a
  function of that generator's state at its start, which is what a checkpoint records: a resume
  draws the same orders again and skips the batches already run, reading no chunk whose rows
  were all used.
- ``prepare_streamed`` is ``prepare`` for such a file: the same task, classes and scalers, the
  scaler fitted in a pass over the training rows.

Which files: Parquet, with ``data.target`` naming the target column(s) and every other column a
number (``data.columns`` may ``"ignore"`` some). A CSV, an .npz or a table with text or category
columns is refused with a line saying what to do: convert a CSV to Parquet, or hold it in memory.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import NetfitError
from .files import available_memory, describe_bytes, open_regular
from .scaling import Moments, Scaler
from .spec import Spec
from .splits import PreparedData, Split
from .targets import describe_target, output_width, resolve_classes, target_names

__all__ = ["ParquetRows", "StreamedRows", "StreamedEpoch", "streaming_reason", "streams", "prepare_streamed",
           "streamed_test_report", "streamed_file_report", "PARQUET_SUFFIXES"]

PARQUET_SUFFIXES = (".parquet", ".pq")

# Held in memory alongside the rows when a run is resident: the parts copied out of the file (2x, see
# prepare) plus room for the network. Training rows above available memory / this are streamed.
_RESIDENT_FACTOR = 2


def _is_parquet(path: Path, format: str | None) -> bool:
    return format == "parquet" or (format is None and path.suffix.lower() in PARQUET_SUFFIXES)


def streaming_reason(spec: Spec) -> str | None:
    """Why the spec's training rows are streamed (the line netfit prints), or None to hold them.

    ``data.streaming = true`` on a file that cannot be streamed is refused here, in one line.
    """
    data = spec.data
    if data.streaming is False:
        return None
    if data.path is None:
        if data.streaming is True:
            raise NetfitError("data.streaming = true reads a Parquet file (data.path); a built-in dataset or arrays "
                              "passed to netfit.fit are held in memory: set data.streaming = \"auto\"")
        return None
    path = Path(data.path).expanduser()
    if not _is_parquet(path, data.format):
        if data.streaming is True:
            raise NetfitError(f"data.streaming = true reads Parquet files, and {str(path)!r} is not one; convert it "
                              "(pyarrow.parquet.write_table(pyarrow.csv.read_csv(path), 'data.parquet')), or set "
                              "data.streaming = false to hold it in memory")
        return None
    chunk = f"in chunks of {data.chunk_rows:,}"
    if data.streaming is True:
        rows = ParquetRows(path, data.target, _ignored(spec))
        nbytes = rows.rows * rows.width * 4  # float32
        return f"netfit: streaming {describe_bytes(nbytes)} of training rows {chunk} (data.streaming = true)"
    # "auto": the footer says how large the rows are; only a table that does not fit must be one
    # streaming can read (numeric columns), so a table of text and categories that fits is held.
    nbytes = _footer_bytes(path, data.target)
    free = available_memory()
    if nbytes is None or nbytes * _RESIDENT_FACTOR <= free:
        return None
    ParquetRows(path, data.target, _ignored(spec))  # refuses, in one line, columns streaming cannot read
    return (f"netfit: streaming {describe_bytes(nbytes)} of training rows {chunk} (they do not fit in "
            f"{describe_bytes(free)} of available memory)")


def _footer_bytes(path: Path, target: str | list[str] | None) -> int | None:
    """The float32 bytes of a Parquet file's feature columns, from its footer; None if it has none to read."""
    import pyarrow.parquet as pq

    with open_regular(path, "data file"):  # a FIFO or a device is refused, not waited on
        pass
    try:
        metadata = pq.ParquetFile(path).metadata
    except (OSError, ValueError):  # not a readable Parquet file: the resident reader names the problem
        return None
    targets = [target] if isinstance(target, str) else list(target or [])
    width = len([name for name in metadata.schema.names if name not in targets])
    return metadata.num_rows * width * 4


def streams(spec: Spec) -> bool:
    """Whether a run of ``spec`` streamed its data (``evaluate`` then streams its test part too)."""
    return spec.data.streaming is not False and spec.data.path is not None and \
        _is_parquet(Path(spec.data.path).expanduser(), spec.data.format)


def _ignored(spec: Spec) -> set[str]:
    kinds = spec.data.columns
    other = {name: kind for name, kind in kinds.items() if kind not in ("ignore", "numeric")}
    if other:
        name, kind = next(iter(other.items()))
        raise NetfitError(f"data.columns makes {name!r} {kind}, but streaming reads numeric columns only; set "
                          "data.streaming = false to hold the table in memory, or drop the column")
    return {name for name, kind in kinds.items() if kind == "ignore"}


class ParquetRows:
    """Row ranges of a Parquet file's feature columns as float32, and its target column(s) whole.

    A range is read from the row groups it overlaps; the last row group read is kept, so reading
    a file in order decodes each group once. Files whose row groups hold about ``data.chunk_rows``
    rows read no more than they use when chunks come in a random order.
    """

    def __init__(self, path: Path, target: str | list[str] | None, ignored: set[str] = frozenset()) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        source = str(self.path)
        with open_regular(self.path, "data file"):  # a FIFO or a device is refused, not waited on
            pass
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise NetfitError(f"{source!r} is not a readable Parquet file ({_first_line(err)})") from None
        schema = self._file.schema_arrow
        names = list(schema.names)
        targets = [target] if isinstance(target, str) else list(target or [])
        if not targets:
            raise NetfitError(f"data.target is not set; name the Parquet column to predict, e.g. --set "
                              f"data.target={names[-1]} (columns: {', '.join(names[:12])})")
        missing = [name for name in targets if name not in names]
        if missing:
            raise NetfitError(f"{source!r} has no column {missing[0]!r}; its columns are {', '.join(names[:12])}")
        self.targets = targets
        self.features = [name for name in names if name not in targets and name not in ignored]
        if not self.features:
            raise NetfitError(f"{source!r} has no feature columns besides the target; check data.target")
        import pyarrow.types as pat

        for name in self.features:
            kind = schema.field(name).type
            if not (pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind)):
                raise NetfitError(f"cannot stream {source!r}: column {name!r} is {kind}, and streaming reads numeric "
                                  "feature columns only; set data.streaming = false to hold the table in memory "
                                  "(its text and category columns are encoded then), or drop the column")
        self.rows = self._file.metadata.num_rows
        self.width = len(self.features)
        sizes = [self._file.metadata.row_group(g).num_rows for g in range(self._file.num_row_groups)]
        self._group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._cached: tuple[int, np.ndarray] | None = None

    @property
    def largest_group(self) -> int:
        return int(np.diff(self._group_starts).max()) if len(self._group_starts) > 1 else 0

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start..stop-1`` of the feature columns, float32, shape (rows, features)."""
        first = int(np.searchsorted(self._group_starts, start, side="right")) - 1
        pieces = []
        group = first
        while group < len(self._group_starts) - 1 and self._group_starts[group] < stop:
            base = int(self._group_starts[group])
            block = self._group(group)
            pieces.append(block[max(start - base, 0):stop - base])
            group += 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _group(self, group: int) -> np.ndarray:
        if self._cached is not None and self._cached[0] == group:
            return self._cached[1]
        self._cached = None  # let the previous group go before the next is decoded
        table = self._file.read_row_group(group, columns=self.features)
        out = np.empty((table.num_rows, self.width), np.float32)
        for j, column in enumerate(table.columns):
            values = column.to_numpy(zero_copy_only=False)  # a null becomes NaN: refused here
            # Checked while contiguous: a pass over one column, not a strided pass over the block.
            if not np.isfinite(values).all():
                row = int(np.argmax(~np.isfinite(values)))
                raise NetfitError(f"{str(self.path)!r}: a missing, NaN or infinite value at row "
                                  f"{int(self._group_starts[group]) + row}, column {self.features[j]!r} (0-based); "
                                  "fill in or drop those rows (streaming does not impute)")
            out[:, j] = values
        self._cached = (group, out)
        return out

    def target_values(self) -> np.ndarray:
        """The target column(s) of every row: int64, float64 or str labels; (rows, k) for several."""
        import pyarrow.types as pat

        table = self._file.read(columns=self.targets)
        values = []
        for name, column in zip(self.targets, table.columns):
            if column.null_count:
                raise NetfitError(f"{str(self.path)!r}: {column.null_count} missing value(s) in target column "
                                  f"{name!r}; fill in or drop those rows")
            kind = column.type
            if pat.is_integer(kind) or pat.is_boolean(kind):
                values.append(column.to_numpy().astype(np.int64, copy=False))
            elif pat.is_floating(kind):
                values.append(column.to_numpy().astype(np.float64, copy=False))
            else:
                values.append(np.asarray([str(v) for v in column.to_pylist()]))
        return values[0] if len(values) == 1 else np.column_stack(values)


class StreamedRows:
    """The rows of one part of a Parquet file (sorted file row numbers ``rows``), read on demand.

    It answers what the engine and the evaluation ask of a resident split's tensor ``X``:
    ``len``, ``shape``, ``dtype``, ``device``, ``to(device)`` and slices ``X[i:j]`` (read in file
    order, a chunk at a time), plus ``epoch(generator)`` for training.
    """

    def __init__(self, source: ParquetRows, rows: np.ndarray, chunk_rows: int, window: int,
                 device: torch.device = torch.device("cpu")) -> None:
        self.source, self.rows, self.chunk_rows, self.window = source, rows, chunk_rows, window
        self.device = torch.device(device)
        # Chunk c is file rows c*chunk_rows..; bounds[c]..bounds[c+1] are its rows of this part.
        edges = np.arange(0, source.rows + chunk_rows, chunk_rows)
        self.bounds = np.searchsorted(rows, edges)
        self.counts = np.diff(self.bounds)
        self._cached: tuple[int, np.ndarray] | None = None
        self.note: str | None = None  # the line saying why the training rows are streamed
        self.data_sha256: str | None = None  # the training rows' hash, from the pass that fitted the scaler

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), self.source.width)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self.source.width * 4

    def to(self, device: torch.device) -> "StreamedRows":
        moved = StreamedRows.__new__(StreamedRows)
        moved.__dict__.update(self.__dict__, device=torch.device(device), _cached=None)
        return moved

    @property
    def chunks(self) -> int:
        return len(self.counts)

    def chunk(self, c: int) -> np.ndarray:
        """This part's rows of chunk ``c``, float32 (rows, features)."""
        if self._cached is not None and self._cached[0] == c:
            return self._cached[1]
        block, mine = self._block(c)
        out = block if mine is None else block[mine]
        self._cached = (c, out)
        return out

    def _block(self, c: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Chunk ``c`` of the file, and which of its rows are this part's (None: all of them)."""
        start = c * self.chunk_rows
        block = self.source.read(start, min(start + self.chunk_rows, self.source.rows))
        mine = self.rows[self.bounds[c]:self.bounds[c + 1]] - start
        return block, (None if len(mine) == len(block) else mine)

    def window_rows(self, chunks: np.ndarray, count: int) -> np.ndarray:
        """The rows of ``chunks``, in that order, in one array filled chunk by chunk (no list of copies)."""
        out = np.empty((count, self.source.width), np.float32)
        at = 0
        for c in chunks:
            block, mine = self._block(c)
            size = len(block) if mine is None else len(mine)
            if mine is None:
                out[at:at + size] = block
            else:  # this part's rows straight into the window: one copy, not two
                np.take(block, mine, axis=0, out=out[at:at + size])
            at += size
        return out

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, stop, step = rows.indices(len(self.rows))
        if step != 1:
            raise IndexError("streamed rows are read in slices of consecutive rows")
        first = int(np.searchsorted(self.bounds, start, side="right")) - 1
        pieces, c = [], first
        while c < self.chunks and self.bounds[c] < stop:
            part = self.chunk(c)
            base = int(self.bounds[c])
            pieces.append(part[max(start - base, 0):stop - base])
            c += 1
        block = pieces[0] if len(pieces) == 1 else np.concatenate(pieces) if pieces \
            else np.empty((0, self.source.width), np.float32)
        return torch.from_numpy(np.ascontiguousarray(block)).to(self.device)

    def in_order(self) -> Iterator[np.ndarray]:
        """Every row once, in file order, a chunk at a time."""
        for c in range(self.chunks):
            if self.counts[c]:
                yield self.chunk(c)

    def epoch(self, generator: torch.Generator) -> "StreamedEpoch":
        return StreamedEpoch(self, generator)

    def sha256(self, y: np.ndarray) -> str:
        """SHA-256 of the rows (as float32) and targets: one pass over the part."""
        digest = hashlib.sha256(f"streamed float32 {self.shape}".encode())
        for block in self.in_order():
            digest.update(memoryview(np.ascontiguousarray(block)).cast("B"))
        digest.update(np.ascontiguousarray(y).tobytes())
        return digest.hexdigest()


class StreamedEpoch:
    """One epoch of streamed training rows: the chunk order is drawn now, each window's row order
    when the window is reached; skipped windows draw theirs too, unread, so the generator ends the
    epoch in the same state however the epoch was run."""

    def __init__(self, rows: StreamedRows, generator: torch.Generator) -> None:
        self.rows, self.generator = rows, generator
        used = np.flatnonzero(rows.counts)  # chunks that hold rows of this part
        order = torch.randperm(len(used), generator=generator, device=generator.device).cpu().numpy()
        self.order = used[order]

    def batches(self, start: int, batch_size: int, full: int, rest: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start``.. as (stored rows, their row numbers in the part), on the rows' device.

        Batches are consecutive slices of the epoch's row order, as in a resident epoch: ``full``
        batches of ``batch_size`` and one of ``rest`` rows (0: none; a single leftover row is dropped).
        """
        rows, device = self.rows, self.rows.device
        steps = full + (rest > 0)
        step, skip, passed = start, start * batch_size, 0
        pieces: list[tuple[torch.Tensor, torch.Tensor]] = []
        have = 0
        windows = [self.order[w:w + rows.window] for w in range(0, len(self.order), rows.window)]
        counts = [int(rows.counts[chunks].sum()) for chunks in windows]
        # The next window is read and decoded on a thread while this one trains (pyarrow decodes
        # without the GIL). Only that thread reads the file during an epoch, and every random draw
        # stays here, in order, so the epoch is the same with or without it.
        reader = ThreadPoolExecutor(max_workers=1)
        ahead: Future | None = None
        try:
            for w, chunks in enumerate(windows):
                count = counts[w]
                perm = torch.randperm(count, generator=self.generator, device=self.generator.device).to(device)
                if passed + count <= skip or step >= steps:  # wholly used before a resume: never read
                    passed += count
                    continue
                block = ahead.result() if ahead is not None else rows.window_rows(chunks, count)
                ahead = reader.submit(rows.window_rows, windows[w + 1], counts[w + 1]) if w + 1 < len(windows) \
                    else None
                x = torch.from_numpy(block).to(device)
                index = torch.from_numpy(np.concatenate(
                    [np.arange(rows.bounds[c], rows.bounds[c + 1]) for c in chunks])).to(device)
                at = max(skip - passed, 0)
                passed += count
                while at < count and step < steps:
                    size = batch_size if step < full else rest
                    take = perm[at:at + min(size - have, count - at)]
                    pieces.append((x.index_select(0, take), index.index_select(0, take)))
                    have += len(take)
                    at += len(take)
                    if have == size:
                        xs, ids = zip(*pieces)
                        yield (xs[0], ids[0]) if len(xs) == 1 else (torch.cat(xs), torch.cat(ids))
                        pieces, have, step = [], 0, step + 1
                del x, index, block  # this window's rows go; the next one is already being read
        finally:
            reader.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Parts:
    """File row numbers of each part: training, validation (may be empty) and test (None: no test part)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray | None


def _parts(spec: Spec, rows: int) -> _Parts:
    """The rows a resident run would put in each part: the same ``split_rows`` draws, on file rows."""
    from .data import split_rows

    data = spec.data
    if data.test_path is not None or data.test_fraction == 0:
        keep, held = split_rows(rows, data.val_fraction, data.split_seed)
        return _Parts(keep, held, None)  # the file's rows are the training part's: no index of all of them
    kept, test = split_rows(rows, data.test_fraction, data.split_seed)
    keep, held = split_rows(len(kept), data.val_fraction, data.split_seed)
    return _Parts(kept[keep], kept[held], test)


def prepare_streamed(spec: Spec, reason: str):
    """``prepare`` for a Parquet file that is streamed: the same Preparation, Splits whose rows stay on disk."""
    from .data import RawData
    from .preparation import Preparation
    from .scaling import fit_scaler
    from .task import infer_task, refuse_constant_target

    data = spec.data
    path = Path(data.path).expanduser()
    ignored = _ignored(spec)
    source = ParquetRows(path, data.target, ignored)
    if source.largest_group > 4 * data.chunk_rows:
        reason += (f"; its row groups hold up to {source.largest_group:,} rows, and a chunk reads its whole group: "
                   f"write it with row_group_size={data.chunk_rows} for speed")
    y_all = source.target_values()
    parts = _parts(spec, source.rows)
    test_source, y_test = None, None
    if data.test_path is not None:
        test_file = Path(data.test_path).expanduser()
        if not _is_parquet(test_file, data.format):
            raise NetfitError(f"data.test_path {str(test_file)!r} is not a Parquet file; a streamed run reads its "
                              "test part in the training file's format")
        test_source = ParquetRows(test_file, data.target, ignored)
        if test_source.features != source.features:
            raise NetfitError(f"{str(test_file)!r} has feature columns {test_source.features[:5]}... but "
                              f"{str(path)!r} has {source.features[:5]}...; give both files the same columns")
        y_test = test_source.target_values()
        test_rows = np.arange(test_source.rows)
    elif parts.test is not None:
        test_source, y_test, test_rows = source, y_all[parts.test], parts.test
    y_train = y_all if parts.test is None else y_all[np.sort(np.concatenate([parts.train, parts.val]))]
    # The task and classes come from the targets alone, by prepare's own functions.
    raw = RawData(name=path.name, X_train=None, y_train=y_train, X_test=None, y_test=y_test, kind="table",
                  feature_names=source.features)
    names = target_names(spec, y_train)
    task, task_reason = infer_task(spec, y_train, describe_target(names))
    y_tr, y_val = y_all[parts.train], y_all[parts.val]
    if len(y_tr) == 0:
        raise NetfitError(f"{raw.name}: no training rows are left after the validation split; "
                          "lower data.val_fraction or add data")
    refuse_constant_target(y_tr, names or ["the target"])
    classes, labels = resolve_classes(spec, task, raw)
    output_size = output_width(spec, task, task_reason, classes, y_tr)
    if spec.model.input != "auto" and spec.model.module is None and spec.model.input != source.width:
        raise NetfitError(f"model.input = {spec.model.input} but {raw.name} rows have {source.width} features; "
                          'set model.input = "auto" or to the data\'s width')
    method = "standardize" if data.scaling == "auto" else data.scaling
    target_method = data.target_scaling
    if target_method == "auto":
        target_method = "standardize" if task == "regression" else "none"
    if target_method == "standardize" and task != "regression":
        raise NetfitError(f"data.target_scaling = 'standardize' only applies to regression, not {task}")

    def rows_of(src: ParquetRows, rows: np.ndarray) -> StreamedRows:
        return StreamedRows(src, rows, data.chunk_rows, data.shuffle_window)

    train_rows = rows_of(source, parts.train)
    input_scaler, sha256 = _fit_streamed(method, train_rows, y_tr)
    preparation = Preparation(
        task=task, task_reason=task_reason, input_size=source.width, output_size=output_size,
        classes=classes, labels=labels, input_scaler=input_scaler,
        target_scaler=fit_scaler(target_method, np.asarray(y_tr, np.float32).reshape(len(y_tr), -1))
        if task == "regression" else Scaler("none"),
        dataset=raw.name, feature_names=list(source.features),
        target_names=names if task == "regression" or (names and len(names) == 1) else None,
    )
    train_rows.data_sha256, train_rows.note = sha256, reason

    def split(rows: StreamedRows | None, y: np.ndarray | None, part: str):
        if rows is None or len(rows) == 0:
            return None
        return Split(rows, preparation.encode_targets(y, f"{raw.name} ({part})"), preparation.input_scaler)

    test = None
    if test_source is not None:
        test = rows_of(test_source, test_rows)
        preparation.test_sha256 = test.sha256(y_test)
    return PreparedData(preparation, split(train_rows, y_tr, "train"),
                        split(rows_of(source, parts.val), y_val, "validation"), split(test, y_test, "test"))


def _fit_streamed(method: str, rows: StreamedRows, y: np.ndarray) -> tuple[Scaler, str]:
    """The input scaler fitted on the training rows, and their hash, in one pass (two to standardize)."""
    from .scaling import fit_scaler

    digest = hashlib.sha256(f"streamed float32 {rows.shape}".encode())
    moments = Moments(rows.source.width)
    for block in rows.in_order():
        digest.update(memoryview(np.ascontiguousarray(block)).cast("B"))
        moments.add_sums(block)
    digest.update(np.ascontiguousarray(y).tobytes())
    if method != "standardize":
        return fit_scaler(method, np.empty((0, rows.source.width), np.float32)), digest.hexdigest()
    for block in rows.in_order():
        moments.add_squares(block)
    return moments.scaler(), digest.hexdigest()


def streamed_test_report(model, data_dir=None) -> dict | None:
    """``netfit evaluate RUN`` for a streamed run: its test part read again in chunks, checked unchanged
    (None when the rows are not those the run recorded)."""
    spec = model.spec
    if data_dir is not None:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"data_dir": data_dir})})
    prepared = prepare_streamed(spec, "")
    if prepared.test is None or prepared.preparation.test_sha256 != model.preparation.test_sha256:
        return None  # not these rows, or a run that held them in memory: the resident check says which
    return model.report(prepared.test.X, prepared.test.y)


def streamed_file_report(model, path: Path) -> dict:
    """``netfit evaluate RUN --data FILE.parquet``: every row of the file, read in chunks."""
    source = ParquetRows(path, model.spec.data.target, _ignored(model.spec))
    if model.preparation.feature_names and source.features != model.preparation.feature_names:
        raise NetfitError(f"{str(path)!r} has feature columns {source.features[:5]}..., not the "
                          f"{model.preparation.feature_names[:5]}... the run was trained on; give the same columns")
    rows = StreamedRows(source, np.arange(source.rows), model.spec.data.chunk_rows, 1)
    return model.report(rows, model.preparation.encode_targets(source.target_values(), str(path)))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
