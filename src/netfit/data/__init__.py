"""Data: from ``spec.data`` to RawData, the examples of a run before any scaling or label mapping.

``load_raw(spec.data)`` reads a built-in dataset (``data.dataset``) or a data file
(``data.path``, plus ``data.test_path``), holds out a test part when asked to
(``data.test_fraction``), and checks the arrays. Modules, one concept each:

- ``formats``: reading data files whole (``read_file``, ``read_table``) or in chunks (``iter_tables``)
- ``csvfile``, ``parquetfile``, ``arrowfile``, ``npfile``, ``idx``, ``images``: the readers of CSV,
  Parquet, Feather/Arrow IPC, NumPy and IDX files and of image folders behind ``formats``
- ``columns``: which named columns are features, targets or ignored (``data.columns``)
- ``convert``: Arrow columns to features (float32 ndarray, or a pyarrow.Table when some are text) and targets
- ``table``: ``Table``, what a reader returns
- ``checks``: refusing arrays that cannot be trained on (``check_arrays``)
- ``datasets``: the built-in datasets by name (``DATASETS``, ``load_builtin``)
- ``download``: fetching IDX files from their mirrors, md5-checked
- ``split``: deterministic row splits (``split_rows``)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import NetfitError
from .checks import check_arrays
from .datasets import DATASETS, load_builtin
from .formats import Table, csv_columns, infer_format, iter_tables, read_file, read_idx_dir, read_table
from .images import read_image_folder
from .rawdata import RawData
from .split import split_rows

if TYPE_CHECKING:
    from ..spec import DataSpec

__all__ = ["RawData", "Table", "load_raw", "read_file", "read_table", "iter_tables", "check_arrays", "split_rows",
           "load_builtin", "DATASETS"]

# What to do when a training file has features but no targets, by format.
_NO_TARGETS_HINT = {
    "idx": "no labels file next to the images; put the matching ...-labels-idx1-ubyte[.gz] file beside it",
    "npz": "no targets array; save it under key 'y', e.g. numpy.savez(path, X=X, y=y)",
    "npy": "a .npy file holds features only; save features and targets together with numpy.savez(path, X=X, y=y)",
    "images": "its images are not in class subfolders; put each class's images in a subfolder named after the class",
}


def load_raw(spec: DataSpec, features: list[str] | None = None) -> RawData:
    """Read the examples that ``spec`` (a DataSpec, the ``data`` section) describes.

    A built-in dataset comes with its own test part. A data file is the training part, and
    ``spec.test_path`` (same format) its test part; an IDX folder with t10k files has its own.
    When the data has no test part, ``spec.test_fraction`` of the rows are held out as one
    (seed ``spec.split_seed``). Features and targets are checked with ``check_arrays``; they
    are not scaled, and class labels are not mapped to ids. ``features`` (a trained run's
    feature names) reads a CSV's feature columns by name, in that order, as the run saw them.
    """
    if spec.dataset is not None:
        raw = load_builtin(spec.dataset, spec.data_dir, spec.download)
        check_arrays(raw.X_train, raw.y_train, f"{raw.name} (training part)", raw.feature_names)
        if raw.X_test is not None:
            check_arrays(raw.X_test, raw.y_test, f"{raw.name} (test part)", raw.feature_names)
    else:
        raw = _load_files(spec, features)
    if raw.X_test is None and spec.test_fraction > 0:
        keep, held = split_rows(len(raw.X_train), spec.test_fraction, spec.split_seed)
        if len(keep) == 0:
            raise NetfitError(
                f"data.test_fraction = {spec.test_fraction} holds out all {len(held)} rows of {raw.name}; "
                "lower data.test_fraction or add rows"
            )
        raw = dataclasses.replace(
            raw,
            X_train=_rows(raw.X_train, keep), y_train=raw.y_train[keep],
            X_test=_rows(raw.X_train, held), y_test=raw.y_train[held], split=(keep, held),
        )
    return raw


def _load_files(spec: DataSpec, features: list[str] | None) -> RawData:
    path = Path(spec.path).expanduser()
    format = spec.format or infer_format(path)
    text = {"header": spec.header, "encoding": spec.encoding, "column_types": spec.columns or None}
    if format == "csv" and spec.target is None:
        columns = csv_columns(path, header=spec.header, encoding=spec.encoding)
        raise NetfitError(
            f"data.target is not set; name the CSV column to predict, e.g. --set data.target={columns[-1]} "
            f"(columns: {', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''})"
        )
    if format != "images" and (spec.image_size is not None or spec.image_mode != "auto"):
        raise NetfitError(f"data.image_size and data.image_mode apply to image folders, but {str(path)!r} is read as "
                          f"{format}; remove them, or point data.path at a folder of images")
    test, test_source, geometry = None, None, None
    if format == "idx" and path.is_dir():
        train, test = read_idx_dir(path)
        test_source = f"{path} (t10k part)"
    elif format == "images":
        images = read_image_folder(path, spec.image_size, spec.image_mode)
        train, geometry = Table(images.X, images.y), images.geometry
    else:
        train = read_file(path, format, spec.target, **text, **({"features": features} if features else {}))
    _require_targets(train, str(path), format)
    _check(train, str(path), spec)

    if spec.test_path is not None:
        if test is not None:
            raise NetfitError(
                f"IDX folder {str(path)!r} already has a t10k test part and data.test_path gives another; keep one"
            )
        test_path = Path(spec.test_path).expanduser()
        test_format = spec.format or infer_format(test_path)
        # By name, so a test file with its columns in another order (or an extra id column) still lines up,
        # and typed as the training columns were, so that a text column stays text in both.
        by_name = {}
        if test_format in _NAMED_FORMATS and train.feature_names:
            by_name = {"features": train.feature_names, "column_types": _types_of(train, spec.columns)}
        if geometry is not None:  # the test images are read as the training images were
            test = Table(*read_image_folder(test_path, geometry=geometry)[:2])
        else:
            test = read_file(test_path, test_format, spec.target, **{**text, **by_name})
        test_source = str(test_path)
        _require_targets(test, test_source, test_format)
    if test is not None:
        _check(test, test_source, spec)
        _require_same_columns(train, test, str(path), test_source)

    return RawData(
        name=path.name,
        X_train=train.X,
        y_train=train.y,
        X_test=None if test is None else test.X,
        y_test=None if test is None else test.y,
        kind="image" if isinstance(train.X, np.ndarray) and train.X.dtype == np.uint8 else "table",
        feature_names=train.feature_names,
        test_ignored=() if test is None else test.ignored,
        image=geometry,
        image_shape=(geometry.height, geometry.width, geometry.channels) if geometry is not None else train.image_shape,
    )


def _require_targets(table: Table, source: str, format: str) -> None:
    if table.y is None:
        hint = _NO_TARGETS_HINT.get(format, "set data.target to the column to predict")
        raise NetfitError(f"{source!r} has features but no targets to train on: {hint}")


def _require_same_columns(train: Table, test: Table, train_source: str, test_source: str) -> None:
    if _width(train.X) != _width(test.X):
        raise NetfitError(
            f"{test_source!r} has {_width(test.X)} features but {train_source!r} has {_width(train.X)}; "
            "give the test data the same columns"
        )
    if train.feature_names and test.feature_names and train.feature_names != test.feature_names:
        column = next(i for i, (a, b) in enumerate(zip(train.feature_names, test.feature_names)) if a != b)
        raise NetfitError(
            f"column {column + 1} is {test.feature_names[column]!r} in {test_source!r} but "
            f"{train.feature_names[column]!r} in {train_source!r}; give both files the same columns in the same order"
        )


# Formats whose columns have names: a test file is read by the training file's names and types.
_NAMED_FORMATS = ("csv", "parquet", "feather")


def _check(table: Table, source: str, spec: DataSpec) -> None:
    # A pyarrow.Table of features (text columns) is checked by the encoder that turns it into numbers,
    # as are missing numbers that data.missing.numeric = "impute" fills in.
    if isinstance(table.X, np.ndarray):
        check_arrays(table.X, table.y, source, table.feature_names,
                     missing_allowed=spec.missing.numeric == "impute")
    elif table.X.num_rows == 0:
        raise NetfitError(f"{source}: the dataset has no rows; check that the file holds data")


def _width(X: np.ndarray | pa.Table) -> int:
    return X.num_columns if isinstance(X, pa.Table) else X.shape[1]


def _rows(X: np.ndarray | pa.Table, index: np.ndarray) -> np.ndarray | pa.Table:
    return X.take(pa.array(index)) if isinstance(X, pa.Table) else X[index]


def _types_of(table: Table, declared: dict[str, str]) -> dict[str, str]:
    """How each feature column of ``table`` was read: numbers, or text (as declared, else categorical)."""
    if not isinstance(table.X, pa.Table):
        return {name: "numeric" for name in table.feature_names or []}
    return {field.name: "numeric" if pa.types.is_floating(field.type) else declared.get(field.name, "categorical")
            for field in table.X.schema}
