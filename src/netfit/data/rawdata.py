"""RawData: the examples of one dataset as read from disk, before scaling or label mapping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from .images import ImageGeometry

__all__ = ["RawData"]


@dataclass
class RawData:
    """Features and targets of a dataset, split into a training part and an optional test part.

    Images stay uint8 (0..255) so that they cost a quarter of the memory of float32 until the
    model needs them; numeric tables are float32 (float64 when handed over as such). A table with
    text columns (categories, free text) is a ``pyarrow.Table`` of its feature columns, numeric ones
    float32 and text ones string, nulls where missing, until an encoder turns it into numbers
    (``netfit.data.table``). Targets are int64 class ids, floats for
    regression, or strings (class labels from a CSV file, mapped to ids by the caller).
    """

    name: str  # "mnist-sample", or the data file's name
    X_train: np.ndarray | pa.Table  # (n, features), or a pyarrow.Table when some feature columns hold text
    y_train: np.ndarray  # (n,), or (n, targets) for several regression targets
    X_test: np.ndarray | pa.Table | None  # None when the data has no test part
    y_test: np.ndarray | None
    kind: str  # "image" (uint8 pixels 0..255) or "table"
    class_names: list[str] | None = None  # names of class ids 0..K-1, when the dataset defines them
    feature_names: list[str] | None = None  # column names, when the source has them
    test_ignored: tuple[str, ...] = ()  # columns of data.test_path that are neither features nor targets, unused
    image: ImageGeometry | None = None  # how an image folder's files became rows (None for other data)
    # (height, width, channels) of each row's pixels: image folders, IDX files, arrays of images; else None
    image_shape: tuple[int, int, int] | None = None
    # The file's rows of each part, (train, test), when data.test_fraction split one file into both
    split: tuple[np.ndarray, np.ndarray] | None = None
