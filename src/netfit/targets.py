"""What the targets say: their names, the classes (index = class id) and the network's output width.

Decided from the training file's targets alone, the same way for a run held in memory and a streamed one.
"""

from __future__ import annotations

import numpy as np

from .data import RawData
from .errors import NetfitError
from .spec import Spec
from .task import looks_like_class_ids

__all__ = ["target_names", "describe_target", "resolve_classes", "output_width"]


def target_names(spec: Spec, y: np.ndarray) -> list[str] | None:
    """Names of the target columns: ``data.target``, else ``target_0``... for several, else None."""
    target = spec.data.target
    if isinstance(target, str):
        return [target]
    if isinstance(target, list):
        return list(target)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return [f"target_{i}" for i in range(y.shape[1])]
    return None


def describe_target(names: list[str] | None) -> str:
    if not names:
        return "the target"
    return f"target column {names[0]!r}" if len(names) == 1 else f"target columns {names}"


def resolve_classes(spec: Spec, task: str, raw: RawData) -> tuple[list[str] | None, str | None]:
    """The class names (index = class id) and how labels were given: "ids", "text" or "integers".

    Classes come from the training file's rows (validation rows included: a rare class may land
    only there), never from the test part.
    """
    if task == "regression":
        return None, None
    y = np.asarray(raw.y_train)
    if y.ndim > 1 and y.reshape(len(y), -1).shape[1] > 1:
        raise NetfitError(f"{raw.name}: the targets have {y.reshape(len(y), -1).shape[1]} columns, but {task} "
                          "needs one label per row; several target columns are for regression "
                          "(train.task = \"regression\")")
    y = y.reshape(-1)
    if y.dtype.kind in "USO":
        return _listed_classes(task, raw, sorted({str(v) for v in y.tolist()}), "text")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if np.any(np.mod(y, 1) != 0):
        raise NetfitError(f"{raw.name}: {task} needs whole-number class labels, found {y[np.mod(y, 1) != 0][0]}; "
                          "set train.task = \"regression\" for real-valued targets")
    values = np.unique(y)
    if np.abs(values).max() >= 2**53:  # beyond what float64 holds exactly: no class id looks like this
        raise NetfitError(f"{raw.name}: label {values[np.argmax(np.abs(values))]:.0f} is too large to be a class "
                          "label; if the target is a quantity, set train.task = \"regression\"")
    values = values.astype(np.int64)
    fixed = spec.model.output if isinstance(spec.model.output, int) and spec.model.module is None else None
    if task == "binary":
        if set(values.tolist()) <= {0, 1}:
            return _named(raw, ["0", "1"]), "ids"
        return _listed_classes(task, raw, [str(v) for v in values.tolist()], "integers")
    if fixed is not None or (values[0] == 0 and looks_like_class_ids(values)):
        # Class ids 0..K-1 (K from model.output when it is set): a class may be missing from the rows.
        count = fixed if fixed is not None else int(values[-1]) + 1
        labels = np.concatenate([values] + ([np.unique(raw.y_test)] if raw.y_test is not None else []))
        if labels.min() < 0 or labels.max() >= count:
            bad = labels[(labels < 0) | (labels >= count)][0]
            raise NetfitError(f"{raw.name}: label {int(bad)} is outside the class range 0..{count - 1} "
                              f"(model.output = {count}); fix the labels or model.output")
        return _named(raw, [str(i) for i in range(count)]), "ids"
    # Whole numbers that are not ids 0..K-1 (-1/1, ratings 1..5, wine quality 3..8): each value is a class.
    return _listed_classes(task, raw, [str(v) for v in values.tolist()], "integers")


def _listed_classes(task: str, raw: RawData, classes: list[str], labels: str) -> tuple[list[str], str]:
    if task == "binary" and len(classes) != 2:
        raise NetfitError(f"{raw.name}: binary needs exactly 2 labels, found {len(classes)}: "
                          f"{', '.join(classes[:5])}; use train.task = \"classification\"")
    return classes, labels


def _named(raw: RawData, ids: list[str]) -> list[str]:
    return list(raw.class_names) if raw.class_names is not None and len(raw.class_names) == len(ids) else ids


def output_width(spec: Spec, task: str, reason: str, classes: list[str] | None, y_train: np.ndarray) -> int:
    if task == "binary":
        natural = 1
    elif task == "classification":
        natural = len(classes)
    else:
        natural = 1 if y_train.ndim == 1 else y_train.shape[1]
    if isinstance(spec.model.output, int) and spec.model.output != natural and spec.model.module is None:
        raise NetfitError(f"model.output = {spec.model.output} but the {task} targets ({reason}) need {natural} "
                          'outputs; set model.output = "auto"')
    return natural
