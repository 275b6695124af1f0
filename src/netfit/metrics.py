"""Evaluation metrics computed from predictions: classification report and regression errors."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["classification_report", "regression_report"]


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision, recall, F1 and support, macro F1, and the confusion matrix.

    ``confusion[i][j]`` counts rows of true class i predicted as class j. A class that is never
    predicted has precision 0 (not NaN), as a user reading the table would expect.
    """
    k = len(classes)
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    confusion = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    present = actual > 0
    return {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": [
            {"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, actual)
        ],
        "confusion": confusion.tolist(),
        "rows": int(len(y_true)),
    }


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE and R^2 (pooled over target columns), in the targets' own units."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    err = y_pred - y_true
    total = ((y_true - y_true.mean(axis=0)) ** 2).sum()
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "r2": float(1.0 - (err ** 2).sum() / total) if total > 0 else float("nan"),
        "rows": int(len(y_true)),
    }
