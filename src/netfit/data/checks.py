"""Sanity checks on features and targets, run before anything is trained on them."""

from __future__ import annotations

import numpy as np

from ..errors import NetfitError

__all__ = ["check_arrays"]


def check_arrays(
    X: np.ndarray, y: np.ndarray | None, source: str, feature_names: list[str] | None = None,
    missing_allowed: bool = False, first_row: int = 0,
) -> None:
    """Raise NetfitError if ``X`` and ``y`` cannot be trained on.

    ``X`` is an ndarray; a pyarrow.Table of features (a file with text columns) is checked by
    the encoder that turns it into numbers.

    Refused: ``X`` that is not a 2-D (rows, features) array, no rows or no features,
    non-numeric features, targets that are neither one value per row (n,) nor one row of
    values per row (n, k), NaN or infinite features or targets, and a different number of
    targets than rows (NaN features are allowed with ``missing_allowed``: they are missing cells to
    fill in). ``source`` names the data in the message (a file or dataset name);
    ``feature_names``, when given, name the column of a bad value; ``first_row`` is the row
    number of ``X``'s first row in ``source`` (a chunk of a larger file).
    """
    if X.ndim >= 1 and len(X) == 0:
        raise NetfitError(f"{source}: the dataset has no rows (shape {X.shape}); check that the file holds data")
    if X.ndim != 2:
        raise NetfitError(
            f"{source}: features must be a 2-D array (rows, features), got shape {X.shape}; "
            "reshape it, e.g. X.reshape(len(X), -1)"
        )
    rows, columns = X.shape
    if columns == 0:
        raise NetfitError(f"{source}: the dataset has no feature columns; check the file and data.target")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise NetfitError(f"{source}: features must be numbers, got dtype {X.dtype}; convert them to numbers")
    if y is not None and (y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0)):
        raise NetfitError(
            f"{source}: targets must be one value per row or one row of values per row, got shape {y.shape}; "
            "give y the shape (rows,) or (rows, targets)"
        )
    if y is not None and len(y) != rows:
        raise NetfitError(
            f"{source}: {rows} rows of features but {len(y)} targets; give one target per row"
        )
    # Integer arrays cannot hold NaN or inf; skipping them keeps image checks free.
    if np.issubdtype(X.dtype, np.floating):
        # With data.missing.numeric = "impute", NaN is a missing cell for the column encoder to fill.
        bad = np.isinf(X) if missing_allowed else ~np.isfinite(X)
        if bad.any():
            first = int(np.argmax(bad.reshape(-1)))
            row, column = divmod(first, columns)
            row += first_row
            name = f" ({feature_names[column]!r})" if feature_names else ""
            raise NetfitError(
                f"{source}: {int(bad.sum())} NaN or infinite feature value(s), the first at row {row}, "
                f"column {column}{name} (0-based); fill in or drop those rows, or train with data.missing.numeric = \"impute\" "
                "to fill them with the training median"
            )
    if y is not None and y.dtype == object:
        # Labels handed over from pandas: a missing one is None or NaN, which would become a class.
        missing = [i for i, v in enumerate(y.reshape(-1).tolist()) if v is None or (isinstance(v, float) and v != v)]
        if missing:
            raise NetfitError(
                f"{source}: {len(missing)} missing target value(s) (None or NaN), the first at row "
                f"{missing[0] // max(y.size // max(len(y), 1), 1)} (0-based); fill in or drop those rows"
            )
    if y is not None and np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y)
        if bad.any():
            first = int(np.argmax(bad.reshape(-1)))
            row, column = divmod(first, y.shape[1]) if y.ndim == 2 else (first, None)
            where = f"row {row}" if column is None else f"row {row}, target column {column}"
            raise NetfitError(
                f"{source}: {int(bad.sum())} NaN or infinite target value(s), the first at {where} "
                "(0-based); fill in or drop those rows"
            )
