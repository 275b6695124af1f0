"""Which task the targets call for: classification, binary or regression, and why.

``train.task`` decides when it is set, else ``train.loss``; otherwise the targets do, read the
way a statistician would read a column of numbers. Text and true/false are labels. Numbers with
a fractional part are quantities. Whole numbers are the hard case, because class ids (0..9)
and counts or measurements (a disease progression score of 25..346) look alike; they are told
apart by how many distinct values there are and how many rows each value has on average:

- fewer than 2 rows per distinct value: quantities (a label seen once cannot be learned);
- at most 20 distinct values with 10 or more rows each: classes;
- values that look like class ids (they start at 0 or 1 and fill the range up to their maximum)
  with 5 or more rows each: classes (CIFAR-100's 100 ids qualify, ages 18..90 do not);
- more than 20 distinct values that do not look like class ids: quantities.

Anything else is ambiguous and refused with a message naming both choices, rather than
guessed: a wrong guess trains the wrong model and still exits 0. The decision and its reason
are printed in the run's first line.
"""

from __future__ import annotations

import numpy as np

from .errors import NetfitError
from .spec import LOSS_TASK, Spec

__all__ = ["infer_task", "looks_like_class_ids", "refuse_constant_target"]

_MAX_FEW_VALUES = 20  # "few labels"
_ROWS_PER_VALUE_FOR_FEW = 10
_ROWS_PER_VALUE_FOR_IDS = 5
_MIN_ROWS_PER_LABEL = 2
_IDS_FILL = 0.9  # class ids fill at least this share of the range 0..max (a class may be rare)


def looks_like_class_ids(values: np.ndarray) -> bool:
    """Whether sorted distinct whole numbers start at 0 or 1 and (nearly) fill the range up to their maximum."""
    low, high = float(values[0]), float(values[-1])
    return low in (0.0, 1.0) and len(values) >= _IDS_FILL * (high - low + 1)


def infer_task(spec: Spec, y: np.ndarray, target: str = "the target") -> tuple[str, str]:
    """The task and a short reason for the run's first line, from ``train.task``, the loss or ``y``.

    ``y`` holds the training part's targets (before the validation split); ``target`` names them.
    Raises NetfitError for whole numbers that could be either class ids or quantities.
    """
    if spec.train.task != "auto":
        return spec.train.task, "set in train.task"
    if spec.train.loss is not None:
        return LOSS_TASK[spec.train.loss.name], f"from train.loss = {spec.train.loss.name!r}"
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return "regression", f"inferred: {y.shape[1]} target columns; set train.task to change"
    y = y.reshape(-1)
    rows = len(y)
    if y.dtype.kind in "USOb":
        distinct = len(np.unique(y.astype(str)))
        kind = "true/false" if y.dtype.kind == "b" else "text"
        return "classification", f"inferred: {kind} labels, {distinct} classes; set train.task to change"
    values = np.unique(y)
    if not np.all(np.mod(values, 1) == 0):
        return "regression", "inferred: real-valued targets; set train.task to change"
    distinct = len(values)
    per_value = rows / distinct
    ids = looks_like_class_ids(values)
    why = f"{distinct} distinct integer targets in {rows} rows"
    if distinct == 2:
        return "classification", "inferred: 2 distinct integer targets; set train.task to change"
    if per_value < _MIN_ROWS_PER_LABEL:
        return "regression", f"inferred: {why}; set train.task to change"
    if (distinct <= _MAX_FEW_VALUES and per_value >= _ROWS_PER_VALUE_FOR_FEW) or (
            ids and per_value >= _ROWS_PER_VALUE_FOR_IDS):
        return "classification", f"inferred: {why}; set train.task to change"
    if distinct > _MAX_FEW_VALUES and not ids:
        return "regression", f"inferred: {why}; set train.task to change"
    raise NetfitError(f"{target}: {why} could be class ids or quantities; say which with "
                      '--set train.task=classification or --set train.task=regression '
                      '(train.task in the spec)')


def refuse_constant_target(y: np.ndarray, names: list[str]) -> None:
    """Refuse training targets that hold one value only (one class, or a constant), whatever the task.

    ``names`` names the target columns (one name for a single target).
    """
    y = np.asarray(y)
    rows = len(y)
    flat = y.reshape(rows, -1)
    if not rows:
        return
    constant = (flat == flat[:1]).all(axis=0)
    if constant.any():
        column = int(np.argmax(constant))
        name = names[column] if column < len(names) else f"target column {column}"
        value = flat[0, column].item()
        value = value.item() if hasattr(value, "item") else value  # an object array's cell may be a numpy scalar
        raise NetfitError(f"{name} has the single value {value!r} in all {rows} training rows, "
                          "so there is nothing to learn (a model would score perfectly by always answering it); "
                          "check data.target, lower data.val_fraction if it left few training rows, or add rows "
                          "with other values")
