"""Raw arrays -> training-ready tensors: task, class ids, splits and scaling, decided once.

Everything a trained model needs to treat new rows the same way (the task, class labels, the
columns, the fitted scalers) is collected in a :class:`~netfit.preparation.Preparation` and saved
in the run directory. Every statistic is fitted on training rows only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from .encoder import as_arrow, check_cells, fit_encoder, infer_column_types
from .data import RawData, check_arrays, load_raw, split_rows
from .data.table import image_shape_of
from .errors import NetfitError
from .features import InputLayout
from .preparation import Preparation, encoded_sha256
from .scaling import Scaler, fit_scaler
from .spec import Spec
from .streaming import prepare_streamed, streaming_reason
from .splits import PreparedData, Split
from .targets import describe_target, output_width, resolve_classes, target_names
from .task import infer_task, refuse_constant_target

__all__ = ["prepare", "resolve_widths"]


def prepare(spec: Spec, X: np.ndarray | None = None, y: np.ndarray | None = None) -> PreparedData:
    """Load (or take) the data, split, encode targets and fit scalers on training rows only.

    A Parquet file that does not fit in memory (or ``data.streaming = true``) stays on disk: its
    splits read rows in chunks (``netfit.streaming``).
    """
    if X is None and (reason := streaming_reason(spec)) is not None:
        return prepare_streamed(spec, reason)
    raw = _raw_from_arrays(spec, X, y) if X is not None else _load_spec_data(spec)
    names = target_names(spec, raw.y_train)
    task, reason = infer_task(spec, raw.y_train, describe_target(names))

    types = _column_types(spec, raw)

    # Validation rows come out of the training part, before any statistic is fitted.
    keep, held = split_rows(len(raw.X_train), spec.data.val_fraction, spec.data.split_seed)
    X_tr, y_tr = _rows(raw.X_train, keep), raw.y_train[keep]
    X_val, y_val = (_rows(raw.X_train, held), raw.y_train[held]) if len(held) else (None, None)
    if len(X_tr) == 0:
        raise NetfitError(f"{raw.name}: no training rows are left after the validation split; "
                          "lower data.val_fraction or add data")
    # The parts are copies of their rows: let the file's whole matrix go, so each row is held once.
    width = int(np.prod(raw.X_train.shape[1:]))
    raw = replace(raw, X_train=None)
    refuse_constant_target(y_tr, names or ["the target"])

    classes, labels = resolve_classes(spec, task, raw)
    output_size = output_width(spec, task, reason, classes, y_tr)
    method = spec.data.scaling
    if method == "auto":
        method = "divide_by_255" if raw.kind == "image" else "standardize"
    encoder = None
    if types is not None:
        encoder = fit_encoder(X_tr, types, spec.data, method, raw.name)
        method = "none"  # the encoder scaled the numeric columns itself
        input_size = encoder.layout.width
        if spec.model.module is not None and not encoder.layout.plain:
            raise NetfitError(f"{raw.name}: model.module reads a plain tensor of numbers, but this table has "
                              f"categorical or text columns ({encoder.describe()}); use netfit's own network "
                              "(remove model.module), or turn the columns into numbers first")
    else:
        input_size = width
    if spec.model.input != "auto" and spec.model.module is None and spec.model.input != input_size:
        raise NetfitError(f"model.input = {spec.model.input} but {raw.name} rows have {input_size} features; "
                          'set model.input = "auto" or to the data\'s width')

    target_method = spec.data.target_scaling
    if target_method == "auto":
        target_method = "standardize" if task == "regression" else "none"
    if target_method == "standardize" and task != "regression":
        raise NetfitError(f"data.target_scaling = 'standardize' only applies to regression, not {task}")

    preparation = Preparation(
        task=task,
        task_reason=reason,
        input_size=input_size,
        output_size=output_size,
        classes=classes,
        labels=labels,
        input_scaler=fit_scaler(method, X_tr.reshape(len(X_tr), -1)) if encoder is None else Scaler("none"),
        target_scaler=fit_scaler(target_method, np.asarray(y_tr, np.float32).reshape(len(y_tr), -1))
        if task == "regression" else Scaler("none"),
        dataset=raw.name,
        feature_names=encoder.names if encoder is not None else list(raw.feature_names)
        if raw.feature_names and len(raw.feature_names) == input_size else None,
        target_names=names if task == "regression" or (names and len(names) == 1) else None,
        encoder=encoder,
        image=raw.image,
    )

    def split(Xp, yp, part):
        if Xp is None or len(Xp) == 0:
            return None
        return Split(preparation.encode_features(Xp, f"{raw.name} ({part})"),
                     preparation.encode_targets(yp, f"{raw.name} ({part})"), preparation.input_scaler)

    test = split(raw.X_test, raw.y_test, "test")
    if raw.X_test is not None:
        # With an encoder the test part is hashed as encoded: from its split, not encoded a second time.
        preparation.test_sha256 = encoded_sha256(test.X, raw.y_test) if encoder is not None and test is not None \
            else preparation.part_sha256(raw.X_test, raw.y_test)
    return PreparedData(preparation, split(X_tr, y_tr, "train"), split(X_val, y_val, "validation"), test,
                        image_shape=raw.image_shape)


def _column_types(spec: Spec, raw: RawData) -> dict[str, str] | None:
    """Each column's type when the table needs the column encoder, else None (a plain numeric matrix).

    The encoder is needed for a table with text columns (the reader gave a pyarrow Table), and for
    missing numbers to be filled in. Missing cells that a policy refuses are refused here, over the
    whole file, so the row named is the file's own.
    """
    if raw.kind != "table":
        return None
    arrow = isinstance(raw.X_train, pa.Table)
    if not arrow and spec.data.missing.numeric != "impute":
        return None
    names = list(raw.feature_names or [f"f{i}" for i in range(raw.X_train.shape[1])])
    table = as_arrow(raw.X_train, names, raw.name)
    types = infer_column_types(table, spec.data.columns, raw.name)
    whole = table
    if raw.split is not None:  # data.test_fraction took test rows out of the file: put them back in place
        order = np.argsort(np.concatenate(raw.split))
        whole = pa.concat_tables([table, as_arrow(raw.X_test, names, raw.name)]).take(pa.array(order))
    check_cells(whole, types, spec.data.missing, raw.name)
    return types


def _rows(X, rows: np.ndarray):
    """Rows ``rows`` (sorted, distinct) of an array or a pyarrow Table; all of them without a copy."""
    if len(rows) == len(X):
        return X
    return X.take(pa.array(rows)) if isinstance(X, pa.Table) else X[rows]


def resolve_widths(spec: Spec) -> tuple[int, int, InputLayout | None]:
    """Input and output widths of the spec's network, loading the data only if one is "auto" or the
    table has categorical or text columns (the layout of the network's first layer, else None)."""
    if spec.model.input != "auto" and spec.model.output != "auto" and not spec.data.columns:
        return int(spec.model.input), int(spec.model.output), None
    prep = prepare(spec).preparation
    return prep.input_size, prep.output_size, prep.layout


def _load_spec_data(spec: Spec) -> RawData:
    if spec.data.dataset is None and spec.data.path is None:
        raise NetfitError("no data: set data.dataset (a built-in name) or data.path (a file), "
                          "or pass X and y to netfit.fit")
    return load_raw(spec.data)


def _raw_from_arrays(spec: Spec, X: Any, y: Any) -> RawData:
    if y is None:
        raise NetfitError("netfit.fit got X without y; pass the targets too")
    source = spec.data.dataset or spec.data.path
    if source is not None:
        raise NetfitError(f"netfit.fit got X and y and a spec whose data is {str(source)!r}; train on one: drop "
                          "data.dataset and data.path from the spec, or do not pass X and y")
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if isinstance(X, (pa.Table, dict)) or type(X).__name__ == "DataFrame":
        # A table of named columns (numbers, categories, text): the column encoder reads it.
        table = as_arrow(X, [], "X")
        if len(y) != table.num_rows:
            raise NetfitError(f"X has {table.num_rows} rows but y has {len(y)} targets; give one target per row")
        X_test = y_test = split = None
        if spec.data.test_fraction > 0:
            keep, held = split_rows(table.num_rows, spec.data.test_fraction, spec.data.split_seed)
            table, y, X_test, y_test = _rows(table, keep), y[keep], _rows(table, held), y[held]
            split = (keep, held)
        return RawData(name="table", X_train=table, y_train=y, X_test=X_test, y_test=y_test, kind="table",
                       feature_names=list(table.column_names), split=split)
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    image_shape = image_shape_of(X)
    if X.ndim > 2:
        X = X.reshape(len(X), -1)
    if X.ndim == 1:
        raise NetfitError(f"X has shape {X.shape}; pass a 2-D array of rows x features (reshape(-1, 1) for one)")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    check_arrays(X, y, "X, y", missing_allowed=spec.data.missing.numeric == "impute")
    X_test = y_test = None
    if spec.data.test_fraction > 0:
        keep, held = split_rows(len(X), spec.data.test_fraction, spec.data.split_seed)
        X, y, X_test, y_test = X[keep], y[keep], X[held], y[held]
    kind = "image" if X.dtype == np.uint8 else "table"
    return RawData(name="arrays", X_train=X, y_train=y, X_test=X_test, y_test=y_test, kind=kind,
                   image_shape=image_shape)
