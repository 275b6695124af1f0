"""Table, what every data-file reader returns, and ReadOptions, what the caller asked it for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["Table", "ReadOptions"]


class Table(NamedTuple):
    """Features, targets and the names of the columns they came from.

    ``y`` is None when the file has no targets; ``feature_names`` is None when the file does not
    name its columns (IDX, NumPy); ``ignored`` lists, in file order, the CSV columns that are
    neither features nor targets (an id, a target not asked for), for the caller to report.
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str] | None = None
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadOptions:
    """What to read from a file; the CSV reader uses every field, the others only ``features``."""

    target: str | list[str] | None = None  # a column (1-D y) or a list of columns (2-D y, numbers only)
    header: bool = True  # the first CSV row names the columns; never guessed
    encoding: str | None = None  # text encoding when the file has no byte-order mark; None: UTF-8
    names: tuple[str, ...] | None = None  # column names of a CSV file without a header row
    features: tuple[str, ...] | None = None  # these columns, in this order; None: every non-target column

    @property
    def targets(self) -> list[str]:
        """The target columns as a list (empty when there is none)."""
        if self.target is None:
            return []
        return [self.target] if isinstance(self.target, str) else list(self.target)
