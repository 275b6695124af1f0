"""Table, what every data-file reader returns, and ReadOptions, what the caller asked it for.

``Table.X`` is one of two things:

- a float32 ``np.ndarray`` of shape (rows, features) when every feature column holds numbers
  or booleans (after ``ReadOptions.column_types``); a missing cell is NaN. IDX and NumPy files
  keep their own dtype (uint8 images stay uint8).
- a ``pyarrow.Table`` of the feature columns, in feature order, when any feature column holds
  text (typed as text by the file or by pyarrow, or declared "categorical" or "text" in
  ``column_types``, which reads it as text even when its cells look like numbers, e.g. zip
  codes): numeric columns are ``pa.float32()``, the others ``pa.string()`` or
  ``pa.large_string()``, with nulls where cells are missing. An encoder turns it into numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
import pyarrow as pa

__all__ = ["Table", "ReadOptions", "image_shape_of"]


class Table(NamedTuple):
    """Features, targets and the names of the columns they came from.

    ``X`` is a float32 ndarray or a pyarrow.Table (see the module docstring). ``y`` is None when
    the file has no targets; ``feature_names`` is None when the file does not name its columns
    (IDX, NumPy); ``ignored`` lists, in file order, the columns that are neither features nor
    targets (an id, a target not asked for, a column declared "ignore"), for the caller to report.
    """

    X: np.ndarray | pa.Table
    y: np.ndarray | None
    feature_names: list[str] | None = None
    ignored: tuple[str, ...] = ()
    image_shape: tuple[int, int, int] | None = None  # (height, width, channels) of each row's pixels, when known


def image_shape_of(array: np.ndarray) -> tuple[int, int, int] | None:
    """(height, width, channels) of an (n, height, width[, channels]) array of images, else None."""
    if array.ndim == 3:
        return array.shape[1], array.shape[2], 1
    if array.ndim == 4:
        return array.shape[1], array.shape[2], array.shape[3]
    return None


@dataclass(frozen=True)
class ReadOptions:
    """What to read from a file; the CSV reader uses every field, Parquet and Feather ``target``, ``features``
    and ``column_types``, the others only ``features``."""

    target: str | list[str] | None = None  # a column (1-D y) or a list of columns (2-D y, numbers only)
    header: bool = True  # the first CSV row names the columns; never guessed
    encoding: str | None = None  # text encoding when the file has no byte-order mark; None: UTF-8
    names: tuple[str, ...] | None = None  # column names of a CSV file without a header row
    features: tuple[str, ...] | None = None  # these columns, in this order; None: every non-target column
    # data.columns: name -> "numeric", "categorical", "text" or "ignore"; other columns are typed by their cells
    column_types: Mapping[str, str] | None = None

    @property
    def targets(self) -> list[str]:
        """The target columns as a list (empty when there is none)."""
        if self.target is None:
            return []
        return [self.target] if isinstance(self.target, str) else list(self.target)
