"""Table columns -> network inputs: column types, missing cells, categories and bag-of-words text.

A table read from CSV, Parquet or Feather may mix numbers, categories and free text. The
:class:`ColumnEncoder` is fitted once, on training rows only, and turns such rows into
:class:`~netfit.features.Features`:

- numeric: missing cells refused, or filled with the training median plus a was-missing
  indicator column; then scaled (``data.scaling``: standardize by default);
- categorical: the training values, one-hot up to ``data.categorical.embed_above`` values, else
  a learned embedding; a value never seen in training gets the "unseen" bucket (an all-zero
  one-hot, embedding code 0, which stays zero); missing cells refused, or the most frequent
  training value plus an indicator;
- text: a bag of words over the ``data.text.max_tokens`` most frequent tokens of the training
  rows (scikit-learn's tokeniser and vocabulary), as counts, 0/1 or TF-IDF, kept sparse.

Which type a column is comes from ``data.columns`` or, when it does not say, from the data
(:func:`infer_column_types`), and is printed once. Everything fitted is plain JSON in the run
(:meth:`ColumnEncoder.to_dict`), validated when read back, and applied by ``predict``, ``evaluate``
and ``load`` to raw rows of the same kind of file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from .errors import NetfitError
from .features import Features, InputLayout
from .registry import nearest
from .spec import DataSpec

if TYPE_CHECKING:
    from scipy import sparse

__all__ = ["ColumnEncoder", "fit_encoder", "infer_column_types", "check_cells", "as_arrow", "MAX_VOCABULARY"]

MAX_VOCABULARY = 10_000_000
# A string column is text when its cells hold this many words on average (a review, a description);
# shorter strings are categories ("red", "New York").
_TEXT_WORDS = 3.0
# A short-string column with more distinct values than this share of its rows (and above
# _MANY_VALUES) is an id or a name, neither a category nor text: the user has to say.
_DISTINCT_SHARE = 0.5
_MANY_VALUES = 1000
_ALL_DISTINCT_ROWS = 50


# ----------------------------------------------------------------------------- fitted columns


@dataclass(frozen=True)
class NumericColumn:
    name: str
    fill: float | None  # the training median, used for missing cells (None: missing cells are refused)
    indicator: bool  # a was-missing 0/1 column follows (training rows had missing cells)
    shift: float
    scale: float
    kind: Literal["numeric"] = "numeric"


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    values: tuple[str, ...]  # the training values; one-hot column i / embedding code i + 1
    fill: str | None  # the most frequent training value, for missing cells (None: refused)
    indicator: bool
    embedding: int | None  # embedding width, or None for one-hot
    kind: Literal["categorical"] = "categorical"


@dataclass(frozen=True)
class TextColumn:
    name: str
    vocabulary: tuple[str, ...]  # token i of the bag
    idf: tuple[float, ...] | None  # TF-IDF weights of the tokens (weighting "tfidf" only)
    kind: Literal["text"] = "text"


Column = Union[NumericColumn, CategoricalColumn, TextColumn]


@dataclass(frozen=True)
class ColumnEncoder:
    """The fitted transform from raw table rows to network inputs; see the module docstring."""

    columns: tuple[Column, ...]  # in the order of the feature columns
    missing_text: Literal["refuse", "empty"]
    weighting: Literal["tfidf", "counts", "binary"]
    ngrams: int
    lowercase: bool

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def layout(self) -> InputLayout:
        dense = vocabulary = 0
        widths = []
        for c in self.columns:
            if isinstance(c, NumericColumn):
                dense += 1 + c.indicator
            elif isinstance(c, CategoricalColumn):
                dense += c.indicator
                if c.embedding is None:
                    dense += len(c.values)
                else:
                    widths.append((len(c.values) + 1, c.embedding))
            else:
                vocabulary += len(c.vocabulary)
        return InputLayout(dense, tuple(widths), vocabulary)

    def describe(self) -> str:
        """One line: ``12 numeric, 2 categorical (color: 5 values, city: 48), 1 text (review)``."""
        numeric = [c for c in self.columns if isinstance(c, NumericColumn)]
        categorical = [c for c in self.columns if isinstance(c, CategoricalColumn)]
        text = [c for c in self.columns if isinstance(c, TextColumn)]
        parts = []
        if numeric:
            filled = [c.name for c in numeric if c.indicator]
            parts.append(f"{len(numeric)} numeric" + (f" ({len(filled)} with missing cells filled)" if filled else ""))
        if categorical:
            shown = ", ".join(f"{c.name}: {len(c.values)} values{' embedded' if c.embedding else ''}"
                              for c in categorical[:8])
            parts.append(f"{len(categorical)} categorical ({shown}{', ...' if len(categorical) > 8 else ''})")
        if text:
            shown = ", ".join(f"{c.name}: {len(c.vocabulary):,} tokens" for c in text[:8])
            parts.append(f"{len(text)} text ({shown}{', ...' if len(text) > 8 else ''})")
        return ", ".join(parts)

    # ------------------------------------------------------------------------- applying

    def transform(self, table: Any, source: str, first_row: int = 0) -> tuple[Features, dict[str, int]]:
        """Encode raw rows (a pyarrow Table, or a 2-D numeric array in column order).

        Returns the features and, per categorical column, how many rows held a value never seen in
        training (they get the "unseen" bucket), for the caller to report. ``first_row`` is the
        row number of the first row in ``source`` (a chunk of a larger file), for messages.
        """
        table = as_arrow(table, self.names, source)
        n = table.num_rows
        layout = self.layout
        dense = np.zeros((n, layout.dense), np.float32)
        codes = np.zeros((n, len(layout.embeddings)), np.int64)
        bags, unseen = [], {}
        at = code_at = 0
        for c in self.columns:
            column = table.column(c.name)
            if isinstance(c, NumericColumn):
                values, missing = _numbers(column, c.name, source, first_row)
                if missing.any():
                    if c.fill is None:
                        raise _missing_error(source, c.name, first_row + int(np.argmax(missing)), int(missing.sum()),
                                             "numeric")
                    values[missing] = c.fill
                dense[:, at] = (values - c.shift) / c.scale
                at += 1
                if c.indicator:
                    dense[:, at] = missing
                    at += 1
            elif isinstance(c, CategoricalColumn):
                text, missing = _strings(column)
                if missing.any():
                    if c.fill is None:
                        raise _missing_error(source, c.name, first_row + int(np.argmax(missing)),
                                             int(missing.sum()), "categorical")
                    text[missing] = c.fill
                index = {value: i for i, value in enumerate(c.values)}
                ids = np.fromiter((index.get(v, -1) for v in text.tolist()), np.int64, n)
                if (ids < 0).any():
                    unseen[c.name] = int((ids < 0).sum())
                if c.embedding is None:
                    seen = np.flatnonzero(ids >= 0)
                    dense[seen, at + ids[seen]] = 1.0  # unseen values: all zeros
                    at += len(c.values)
                else:
                    codes[:, code_at] = ids + 1  # unseen values: code 0
                    code_at += 1
                if c.indicator:
                    dense[:, at] = missing
                    at += 1
            else:
                text, missing = _strings(column)
                if missing.any():
                    if self.missing_text == "refuse":
                        raise _missing_error(source, c.name, first_row + int(np.argmax(missing)),
                                             int(missing.sum()), "text")
                    text[missing] = ""
                bags.append(self._bag(c, text))
        return _features(dense, codes, bags, n), unseen

    def _bag(self, c: TextColumn, text: np.ndarray) -> sparse.csr_matrix:
        vectorizer = _count_vectorizer(self.lowercase, self.ngrams, vocabulary=list(c.vocabulary))
        return _weigh(vectorizer.transform(text.tolist()).tocsr(), self.weighting, c.idf)

    # ------------------------------------------------------------------------- the saved form

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [_column_dict(c) for c in self.columns],
            "missing_text": self.missing_text,
            "weighting": self.weighting,
            "ngrams": self.ngrams,
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "ColumnEncoder":
        """Validate a saved encoder; NetfitError naming the first problem."""
        try:
            record = _EncoderRecord.model_validate(raw)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise NetfitError(f"{source}: columns.{where}: {first['msg']}; the run folder was edited or damaged, "
                              "train it again") from None
        problem = record.problem()
        if problem:
            raise NetfitError(f"{source}: columns: {problem}; the run folder was edited or damaged, train it again")
        return record.encoder()


def _count_vectorizer(lowercase: bool, ngrams: int, **options: Any):
    """scikit-learn's CountVectorizer with netfit's settings: one place, for fitting and applying alike."""
    # Imported here, not at the top: scikit-learn's text module costs start-up time to every
    # netfit command, and only a table with text columns needs it.
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(lowercase=lowercase, ngram_range=(1, ngrams), dtype=np.float32, **options)


def _features(dense: np.ndarray, codes: np.ndarray, bags: list[sparse.csr_matrix], n: int) -> Features:
    from scipy import sparse

    bag = sparse.hstack(bags, format="csr") if len(bags) > 1 else (bags[0] if bags else sparse.csr_matrix((n, 0)))
    bag.sort_indices()
    return Features(torch.from_numpy(dense), torch.from_numpy(codes),
                    torch.from_numpy(bag.indptr.astype(np.int64)), torch.from_numpy(bag.indices.astype(np.int64)),
                    torch.from_numpy(bag.data.astype(np.float32)))


def _weigh(counts: sparse.csr_matrix, weighting: str, idf: tuple[float, ...] | None) -> sparse.csr_matrix:
    from scipy import sparse
    from sklearn.preprocessing import normalize

    if weighting == "binary":
        counts.data[:] = 1.0
        return counts
    if weighting == "counts":
        return counts
    # scikit-learn's TfidfTransformer with its defaults: counts times idf, rows L2-normalised.
    weighted = counts @ sparse.diags(np.asarray(idf, np.float32))
    return normalize(weighted.tocsr(), norm="l2", copy=False).astype(np.float32)


# ----------------------------------------------------------------------------- reading cells


def as_arrow(table: Any, names: list[str], source: str) -> pa.Table:
    """Rows as a pyarrow Table with (at least) the columns ``names``.

    Takes a pyarrow Table, a dict of columns, a pandas DataFrame, or a 2-D array whose columns are
    ``names`` in order (numbers only).
    """
    if isinstance(table, pa.Table):
        pass
    elif isinstance(table, dict):
        columns = {str(k): _column_array(v, str(k), source) for k, v in table.items()}
        lengths = {name: len(column) for name, column in columns.items()}
        if len(set(lengths.values())) > 1:
            first, rows = next(iter(lengths.items()))
            odd = next(n for n in lengths if lengths[n] != rows)
            raise NetfitError(f"{source}: column {odd!r} has {lengths[odd]} cells but column {first!r} has {rows}; "
                              "give every column one cell per row")
        table = pa.table(columns)
    elif hasattr(table, "__dataframe__") or type(table).__name__ == "DataFrame":
        table = pa.Table.from_pandas(table, preserve_index=False)
    else:
        array = table.detach().cpu().numpy() if isinstance(table, torch.Tensor) else np.asarray(table)
        if array.ndim != 2 or array.shape[1] != len(names):
            raise NetfitError(f"{source}: rows have shape {array.shape} but the model reads {len(names)} columns "
                              f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}); pass a table with those "
                              "columns (a pyarrow Table, a dict of columns or a pandas DataFrame)")
        table = pa.table({name: _column_array(array[:, i], name, source) for i, name in enumerate(names)})
    missing = [name for name in names if name not in table.column_names]
    if missing:
        near = nearest(missing[0], table.column_names)
        raise NetfitError(f"{source}: column {missing[0]!r} is missing{f' (did you mean {near!r}?)' if near else ''}; "
                          "give the columns the model was trained on")
    return table


def _column_array(values: Any, name: str, source: str) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    array = np.asarray(values)
    if array.ndim != 1:  # a single string or number, or a nested list: pyarrow's message names no column
        raise NetfitError(f"{source}: column {name!r} is {_shown(values)}, not a list of cells; give every column "
                          "as a list (or 1-D array) with one cell per row")
    if array.dtype.kind == "O":
        try:  # pyarrow types a list of numbers and None as numbers with nulls, of strings as strings
            return pa.array(array.tolist(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed: every cell as text
            return pa.array([None if v is None or (isinstance(v, float) and v != v) else str(v)
                             for v in array.tolist()], pa.string())
    return pa.array(array)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(column: pa.ChunkedArray, name: str, source: str, first_row: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 values and a missing mask (null or NaN); infinities and non-numbers are refused."""
    kind = column.type
    if pa.types.is_boolean(kind):
        column = pc.cast(column, pa.int8())
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        sample = next((v for v in column.to_pylist() if v is not None), None)
        raise NetfitError(f"{source}: column {name!r} holds {sample!r}, not a number, but the model was trained on "
                          "numbers there; give the same kind of values as in training")
    values = column.to_numpy(zero_copy_only=False).astype(np.float32, copy=True)
    missing = np.isnan(values)
    infinite = np.isinf(values)
    if infinite.any():
        row = first_row + int(np.argmax(infinite))
        raise NetfitError(f"{source}: {int(infinite.sum())} infinite value(s) in column {name!r}, the first at row "
                          f"{row} (0-based); fix or drop those rows")
    return values, missing


def _strings(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The cells as a NumPy object array of str, and a missing mask (null)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    missing = column.is_null().to_numpy(zero_copy_only=False)
    text = np.array(column.to_pylist(), dtype=object)
    return text, missing


def _missing_error(source: str, name: str, row: int, count: int, kind: str) -> NetfitError:
    # Worded for training and for predicting alike: a trained run's policy is fixed, so the
    # setting is named as something to train with.
    fix = {"numeric": 'to fill them with the training median instead, train with data.missing.numeric = "impute"',
           "categorical": 'to fill them with the most frequent training value instead, train with '
                          'data.missing.categorical = "impute"',
           "text": 'to read them as empty text instead, train with data.missing.text = "empty"'}[kind]
    return NetfitError(f"{source}: {count} missing value(s) in {kind} column {name!r}, the first at row {row} "
                       f"(0-based); fill them in or drop those rows; {fix}")


# ----------------------------------------------------------------------------- fitting


def infer_column_types(table: pa.Table, declared: dict[str, str], source: str) -> dict[str, str]:
    """Each feature column's type: as ``data.columns`` says, else from its values (see the module docstring)."""
    # An "ignore" column was left out by the reader already (which refused a name not in the file).
    unknown = [name for name, kind in declared.items() if name not in table.column_names and kind != "ignore"]
    if unknown:
        near = nearest(unknown[0], table.column_names)
        raise NetfitError(f"data.columns names {unknown[0]!r}, which is not a feature column of {source}"
                          f"{f' (did you mean {near!r}?)' if near else ''}; fix the name or remove it")
    types = {}
    for name in table.column_names:
        column = table.column(name)
        if name in declared:
            types[name] = declared[name]
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or \
                pa.types.is_boolean(column.type):
            types[name] = "numeric"
        else:
            types[name] = _string_type(column, name, source)
    return types


def check_cells(table: pa.Table, types: dict[str, str], missing: Any, source: str) -> None:
    """Refuse the missing cells that ``data.missing`` does not allow, naming the first (row of ``table``)."""
    policy = {"numeric": missing.numeric, "categorical": missing.categorical, "text": missing.text}
    for name, kind in types.items():
        if kind == "ignore" or policy[kind] != "refuse":
            continue
        column = table.column(name)
        absent = column.is_null()
        if kind == "numeric" and pa.types.is_floating(column.type):
            absent = pc.or_(absent, pc.fill_null(pc.is_nan(column), False))  # is_nan(null) is null
        count = pc.sum(absent).as_py() or 0
        if count:
            row = pc.index(absent, True).as_py()
            raise _missing_error(source, name, row, count, kind)


def _string_type(column: pa.ChunkedArray, name: str, source: str) -> str:
    present = column.drop_null()
    if len(present) == 0:
        raise NetfitError(f"{source}: column {name!r} has no values in the training rows; set "
                          f'data.columns.{name} = "ignore"')
    words = pc.list_value_length(pc.utf8_split_whitespace(pc.cast(present, pa.string())))
    mean_words = pc.mean(words).as_py() or 0.0
    if mean_words >= _TEXT_WORDS:
        return "text"
    distinct = pc.count_distinct(present).as_py()
    # Every value different in dozens of rows is an id (a name, a key): as a category, every new row
    # would be unseen. Above _MANY_VALUES, more than _DISTINCT_SHARE distinct is the same.
    all_distinct = distinct == len(present) and len(present) >= _ALL_DISTINCT_ROWS
    if all_distinct or (distinct > _MANY_VALUES and distinct > _DISTINCT_SHARE * len(present)):
        raise NetfitError(f"{source}: column {name!r} has {distinct:,} distinct short values in {len(present):,} rows, "
                          "too many for categories and too short for text (an id or a name?); say what it is: "
                          f'data.columns.{name} = "ignore", "categorical" or "text"')
    return "categorical"


def fit_encoder(table: Any, types: dict[str, str], data: DataSpec, scaling: str, source: str) -> ColumnEncoder:
    """Fit every column's transform on ``table``, the training rows (validation and test rows excluded)."""
    table = as_arrow(table, list(types), source)
    columns: list[Column] = []
    for name, kind in types.items():
        if kind == "ignore":
            continue
        column = table.column(name)
        if kind == "numeric":
            columns.append(_fit_numeric(column, name, data, scaling, source))
        elif kind == "categorical":
            columns.append(_fit_categorical(column, name, data, source))
        else:
            columns.append(_fit_text(column, name, data, source))
    if not columns:
        raise NetfitError(f"{source}: every feature column is ignored (data.columns); keep at least one")
    encoder = ColumnEncoder(tuple(columns), data.missing.text, data.text.weighting, data.text.ngrams,
                            data.text.lowercase)
    return encoder


def _fit_numeric(column: pa.ChunkedArray, name: str, data: DataSpec, scaling: str, source: str) -> NumericColumn:
    values, missing = _numbers(column, name, source)
    fill = None
    if missing.any() and data.missing.numeric == "refuse":
        raise _missing_error(source, name, int(np.argmax(missing)), int(missing.sum()), "numeric")
    present = values[~missing]
    if len(present) == 0:
        raise NetfitError(f"{source}: numeric column {name!r} has no values in the training rows; "
                          f'set data.columns.{name} = "ignore"')
    if data.missing.numeric == "impute":
        fill = float(np.median(present))
        values = np.where(missing, fill, values)
    shift, scale = 0.0, 1.0
    if scaling == "standardize":
        shift = float(values.mean(dtype=np.float64))
        scale = float(values.std(dtype=np.float64))
        scale = scale if scale > 1e-12 else 1.0  # a constant column stays centred, not divided by 0
    elif scaling == "divide_by_255":
        scale = 255.0
    return NumericColumn(name, fill, bool(missing.any()) and fill is not None, shift, scale)


def _fit_categorical(column: pa.ChunkedArray, name: str, data: DataSpec, source: str) -> CategoricalColumn:
    text, missing = _strings(column)
    fill = None
    if missing.any() and data.missing.categorical == "refuse":
        raise _missing_error(source, name, int(np.argmax(missing)), int(missing.sum()), "categorical")
    values, counts = np.unique(text[~missing].astype(str), return_counts=True)
    if len(values) == 0:
        raise NetfitError(f"{source}: categorical column {name!r} has no values in the training rows; "
                          f'set data.columns.{name} = "ignore"')
    if data.missing.categorical == "impute":
        fill = str(values[np.argmax(counts)])  # the first of the most frequent, in sorted order: deterministic
    k = len(values)
    embedding = None
    if k > data.categorical.embed_above:
        dim = data.categorical.embedding_dim
        embedding = dim if isinstance(dim, int) else min(50, round(1.6 * k ** 0.56))
    return CategoricalColumn(name, tuple(values.tolist()), fill, bool(missing.any()) and fill is not None, embedding)


def _fit_text(column: pa.ChunkedArray, name: str, data: DataSpec, source: str) -> TextColumn:
    text, missing = _strings(column)
    if missing.any():
        if data.missing.text == "refuse":
            raise _missing_error(source, name, int(np.argmax(missing)), int(missing.sum()), "text")
        text[missing] = ""
    options = data.text
    vectorizer = _count_vectorizer(options.lowercase, options.ngrams, max_features=options.max_tokens,
                                   min_df=options.min_count)
    try:
        counts = vectorizer.fit_transform(text.tolist())
    except ValueError:  # scikit-learn's "empty vocabulary": no row has a token
        raise NetfitError(f"{source}: text column {name!r} has no words in the training rows (or none in "
                          f"data.text.min_count = {options.min_count} rows); check the column, or set "
                          f'data.columns.{name} = "ignore"') from None
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
    idf = None
    if options.weighting == "tfidf":
        # scikit-learn's smooth idf: ln((1 + n) / (1 + df)) + 1.
        df = np.diff(counts.tocsc().indptr)  # rows holding each token
        idf = tuple((np.log((1 + counts.shape[0]) / (1 + df)) + 1).astype(np.float64).tolist())
    return TextColumn(name, tuple(vocabulary), idf)


# ----------------------------------------------------------------------------- the saved form, validated


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _NumericRecord(_Strict):
    kind: Literal["numeric"]
    name: StrictStr = Field(max_length=10_000)
    fill: StrictFloat | None
    indicator: bool
    shift: StrictFloat
    scale: StrictFloat


class _CategoricalRecord(_Strict):
    kind: Literal["categorical"]
    name: StrictStr = Field(max_length=10_000)
    values: list[StrictStr] = Field(min_length=1, max_length=MAX_VOCABULARY)
    fill: StrictStr | None
    indicator: bool
    embedding: StrictInt | None = Field(None, gt=0, le=65_536)


class _TextRecord(_Strict):
    kind: Literal["text"]
    name: StrictStr = Field(max_length=10_000)
    vocabulary: list[StrictStr] = Field(min_length=1, max_length=MAX_VOCABULARY)
    idf: list[StrictFloat] | None


class _EncoderRecord(_Strict):
    columns: list[Annotated[Union[_NumericRecord, _CategoricalRecord, _TextRecord], Field(discriminator="kind")]] = \
        Field(min_length=1, max_length=100_000)
    missing_text: Literal["refuse", "empty"]
    weighting: Literal["tfidf", "counts", "binary"]
    ngrams: Literal[1, 2]
    lowercase: bool

    def problem(self) -> str | None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            return f"column {next(n for n in names if names.count(n) > 1)!r} is named twice"
        for c in self.columns:
            if isinstance(c, _NumericRecord):
                numbers = [c.shift, c.scale] + ([c.fill] if c.fill is not None else [])
                if not all(math.isfinite(v) for v in numbers) or c.scale <= 0:
                    return f"column {c.name!r}: shift, scale and fill must be finite and scale positive"
                if c.indicator and c.fill is None:
                    return f"column {c.name!r}: an indicator needs a fill value"
            elif isinstance(c, _CategoricalRecord):
                if len(set(c.values)) != len(c.values):
                    return f"column {c.name!r} lists a value twice"
                if c.fill is not None and c.fill not in c.values:
                    return f"column {c.name!r}: its fill value is not one of its values"
                if c.indicator and c.fill is None:
                    return f"column {c.name!r}: an indicator needs a fill value"
            else:
                if len(set(c.vocabulary)) != len(c.vocabulary):
                    return f"column {c.name!r} lists a token twice"
                if (c.idf is None) != (self.weighting != "tfidf"):
                    return f"column {c.name!r}: idf weights go with weighting \"tfidf\" and only with it"
                if c.idf is not None and (len(c.idf) != len(c.vocabulary)
                                          or not all(math.isfinite(v) and v > 0 for v in c.idf)):
                    return f"column {c.name!r}: idf needs one finite positive weight per token"
        return None

    def encoder(self) -> ColumnEncoder:
        columns: list[Column] = []
        for c in self.columns:
            if isinstance(c, _NumericRecord):
                columns.append(NumericColumn(c.name, c.fill, c.indicator, c.shift, c.scale))
            elif isinstance(c, _CategoricalRecord):
                columns.append(CategoricalColumn(c.name, tuple(c.values), c.fill, c.indicator, c.embedding))
            else:
                columns.append(TextColumn(c.name, tuple(c.vocabulary), None if c.idf is None else tuple(c.idf)))
        return ColumnEncoder(tuple(columns), self.missing_text, self.weighting, self.ngrams, self.lowercase)


def _column_dict(c: Column) -> dict[str, Any]:
    if isinstance(c, NumericColumn):
        return {"kind": "numeric", "name": c.name, "fill": c.fill, "indicator": c.indicator, "shift": c.shift,
                "scale": c.scale}
    if isinstance(c, CategoricalColumn):
        return {"kind": "categorical", "name": c.name, "values": list(c.values), "fill": c.fill,
                "indicator": c.indicator, "embedding": c.embedding}
    return {"kind": "text", "name": c.name, "vocabulary": list(c.vocabulary),
            "idf": None if c.idf is None else list(c.idf)}
