"""Evaluation reports from predictions, computed by scikit-learn's metrics.

Regression R^2 is reported one way everywhere (training lines, ``metrics.csv``, ``run.json``,
``evaluate``): scikit-learn's ``r2_score`` with ``multioutput="uniform_average"``, in the targets'
own units. R^2 of one column does not change when the column is standardized, so the figure the
training loop computes on standardized targets is the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# scikit-learn is imported inside each report: importing it costs about a second, which every
# netfit command (predict, summary, --help) would pay at start-up, and only a report needs it.

__all__ = ["classification_report", "regression_report"]


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision, recall, F1 and support, macro F1, and the confusion matrix.

    ``confusion[i][j]`` counts rows of true class i predicted as class j. A class that is never
    predicted has precision 0 (not NaN), as a user reading the table would expect. Macro F1 is
    scikit-learn's ``f1_score(average="macro")``: the mean over the classes that occur in the
    labels or in the predictions, so predicting a class that never occurs counts against it.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = np.arange(len(classes))
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0.0)
    present = np.isin(ids, y_true) | np.isin(ids, y_pred)
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": [
            {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)
        ],
        "confusion": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "rows": int(len(y_true)),
    }


def regression_report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str] | None = None) -> dict[str, Any]:
    """MAE, RMSE and R^2 in the targets' own units, averaged uniformly over target columns, and per column.

    ``names`` names the target columns (``target_0``... when not given); ``per_target`` holds one
    entry per column when there are several.
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    mae = mean_absolute_error(y_true, y_pred, multioutput="raw_values")
    rmse = np.sqrt(mean_squared_error(y_true, y_pred, multioutput="raw_values"))
    r2 = _r2_per_target(y_true, y_pred)
    # Each figure is the uniform average of the per-target ones, as scikit-learn's
    # mean_absolute_error, root_mean_squared_error and r2_score report them.
    report: dict[str, Any] = {"mae": float(mae.mean()), "rmse": float(rmse.mean()), "r2": float(r2.mean()),
                              "rows": int(len(y_true))}
    if y_true.shape[1] > 1:
        names = names or [f"target_{i}" for i in range(y_true.shape[1])]
        report["per_target"] = [{"target": n, "mae": float(a), "rmse": float(m), "r2": float(r)}
                                for n, a, m, r in zip(names, mae, rmse, r2)]
    return report


def _r2_per_target(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    # R^2 needs two rows; one row has no variance to explain.
    if len(y_true) < 2:
        return np.full(y_true.shape[1], np.nan)
    from sklearn.metrics import r2_score

    return np.atleast_1d(r2_score(y_true, y_pred, multioutput="raw_values"))
