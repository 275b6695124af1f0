"""Raw arrays -> training-ready tensors: task, class ids, splits and scaling, decided once.

Everything a trained model needs to treat new rows the same way (the task, class labels, the
fitted scalers) is collected in :class:`Preparation` and saved in the run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .data import RawData, check_arrays, load_raw, split_rows
from .errors import NetfitError
from .scaling import Scaler, fit_scaler
from .spec import LOSS_TASK, Spec

__all__ = ["Preparation", "PreparedData", "Split", "prepare", "infer_task", "resolve_widths"]

# Float targets with few distinct whole values are class ids (a CSV "label" column read as floats).
_MAX_CLASSES_FROM_FLOATS = 20


@dataclass
class Split:
    """Stored features ``X`` (uint8 images or float32 table rows, unscaled) and targets ``y``.

    ``y`` holds int64 class ids, or float32 (n, k) values (scaled, for regression).
    ``scaler`` turns stored rows into the network's inputs, batch by batch, on any device.
    """

    X: torch.Tensor
    y: torch.Tensor
    scaler: Scaler

    def __len__(self) -> int:
        return self.X.shape[0]

    def to(self, device: torch.device) -> "Split":
        return Split(self.X.to(device), self.y.to(device), self.scaler)

    def inputs(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """Scaled float32 inputs of ``rows`` (an index tensor or a slice)."""
        stored = self.X.index_select(0, rows) if isinstance(rows, torch.Tensor) else self.X[rows]
        return self.scaler.apply(stored)


@dataclass
class Preparation:
    """What a trained model needs to know about its data: saved with every run."""

    task: str  # "classification", "binary" or "regression"
    input_size: int
    output_size: int
    classes: list[str] | None  # class labels, index = class id
    input_scaler: Scaler
    target_scaler: Scaler  # identity unless regression targets were standardized
    dataset: str
    text_labels: bool = False  # classes came from text labels, so predictions are returned as text

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "classes": self.classes,
            "input_scaler": self.input_scaler.to_dict(),
            "target_scaler": self.target_scaler.to_dict(),
            "dataset": self.dataset,
            "text_labels": self.text_labels,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Preparation":
        return cls(
            task=raw["task"],
            input_size=int(raw["input_size"]),
            output_size=int(raw["output_size"]),
            classes=raw["classes"],
            input_scaler=Scaler.from_dict(raw["input_scaler"]),
            target_scaler=Scaler.from_dict(raw["target_scaler"]),
            dataset=raw["dataset"],
            text_labels=bool(raw.get("text_labels", False)),
        )

    def encode_targets(self, y: np.ndarray, source: str) -> torch.Tensor:
        """Targets in the units and dtype the loss expects (class ids, or scaled floats)."""
        if self.task == "regression":
            y2 = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
            if y2.shape[1] != self.output_size:
                raise NetfitError(f"{source}: targets have {y2.shape[1]} columns but the model predicts "
                                  f"{self.output_size}")
            return torch.from_numpy(self.target_scaler.transform(y2))
        ids = _class_ids(y, self.classes, source)
        if self.task == "binary":
            return torch.from_numpy(ids.astype(np.float32)).reshape(-1, 1)
        return torch.from_numpy(ids)

    def encode_features(self, X: np.ndarray, source: str) -> torch.Tensor:
        """Stored features (uint8 kept, else float32), unscaled, checked against the input width."""
        X = np.asarray(X)
        if X.ndim > 2:
            X = X.reshape(len(X), -1)
        if X.ndim != 2 or X.shape[1] != self.input_size:
            width = X.shape[1] if X.ndim == 2 else "?"
            raise NetfitError(f"{source}: rows have {width} features but the model expects {self.input_size}; "
                              "give the same columns the model was trained on")
        stored = X if X.dtype == np.uint8 else X.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(stored))


@dataclass
class PreparedData:
    """Tensors for each part; ``val`` and ``test`` are None when there is no such part."""

    preparation: Preparation
    train: Split
    val: Split | None
    test: Split | None


def infer_task(spec: Spec, y: np.ndarray) -> tuple[str, str]:
    """The task and a short reason, from ``train.task``, else the loss, else the targets."""
    if spec.train.task != "auto":
        return spec.train.task, "set in train.task"
    if spec.train.loss is not None:
        return LOSS_TASK[spec.train.loss.name], f"from loss {spec.train.loss.name!r}"
    if y.dtype.kind in "iuUSOb":
        return "classification", "integer or text targets"
    if y.ndim == 1 and np.all(np.mod(y, 1) == 0) and len(np.unique(y)) <= _MAX_CLASSES_FROM_FLOATS:
        return "classification", "whole-number targets with few distinct values"
    return "regression", "real-valued targets"


def prepare(spec: Spec, X: np.ndarray | None = None, y: np.ndarray | None = None) -> PreparedData:
    """Load (or take) the data, split, encode targets and fit scalers on training rows only."""
    raw = _raw_from_arrays(spec, X, y) if X is not None else _load_spec_data(spec)
    task, _reason = infer_task(spec, raw.y_train)

    # Validation rows come out of the training part, before any statistic is fitted.
    keep, held = split_rows(len(raw.X_train), spec.data.val_fraction, spec.data.split_seed)
    X_tr, y_tr = raw.X_train[keep], raw.y_train[keep]
    X_val, y_val = (raw.X_train[held], raw.y_train[held]) if len(held) else (None, None)
    if len(X_tr) == 0:
        raise NetfitError(f"{raw.name}: no training rows are left after the validation split; "
                          "lower data.val_fraction or add data")

    classes = _resolve_classes(spec, task, raw, y_tr)
    output_size = _output_size(spec, task, classes, y_tr)
    input_size = int(np.prod(raw.X_train.shape[1:]))
    if spec.model.input != "auto" and spec.model.module is None and spec.model.input != input_size:
        raise NetfitError(f"model.input = {spec.model.input} but {raw.name} rows have {input_size} features; "
                          'set model.input = "auto" or to the data\'s width')

    method = spec.data.scaling
    if method == "auto":
        method = "divide_by_255" if raw.kind == "image" else "standardize"
    target_method = spec.data.target_scaling
    if target_method == "auto":
        target_method = "standardize" if task == "regression" else "none"
    if target_method == "standardize" and task != "regression":
        raise NetfitError(f"data.target_scaling = 'standardize' only applies to regression, not {task}")

    preparation = Preparation(
        task=task,
        input_size=input_size,
        output_size=output_size,
        classes=classes,
        input_scaler=fit_scaler(method, X_tr.reshape(len(X_tr), -1)),
        target_scaler=fit_scaler(target_method, np.asarray(y_tr, np.float32).reshape(len(y_tr), -1))
        if task == "regression" else Scaler("none"),
        dataset=raw.name,
        text_labels=task != "regression" and raw.y_train.dtype.kind in "USO",
    )

    def split(Xp, yp, part):
        if Xp is None or len(Xp) == 0:
            return None
        return Split(preparation.encode_features(Xp, f"{raw.name} ({part})"),
                     preparation.encode_targets(yp, f"{raw.name} ({part})"), preparation.input_scaler)

    return PreparedData(preparation, split(X_tr, y_tr, "train"), split(X_val, y_val, "validation"),
                        split(raw.X_test, raw.y_test, "test"))


def resolve_widths(spec: Spec) -> tuple[int, int]:
    """Input and output widths of the spec's network, loading the data only if one is "auto"."""
    if spec.model.input != "auto" and spec.model.output != "auto":
        return int(spec.model.input), int(spec.model.output)
    prep = prepare(spec).preparation
    return prep.input_size, prep.output_size


def _load_spec_data(spec: Spec) -> RawData:
    if spec.data.dataset is None and spec.data.path is None:
        raise NetfitError("no data: set data.dataset (a built-in name) or data.path (a file), "
                          "or pass X and y to netfit.fit")
    return load_raw(spec.data)


def _raw_from_arrays(spec: Spec, X: Any, y: Any) -> RawData:
    if y is None:
        raise NetfitError("netfit.fit got X without y; pass the targets too")
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if X.ndim > 2:
        X = X.reshape(len(X), -1)
    if X.ndim == 1:
        raise NetfitError(f"X has shape {X.shape}; pass a 2-D array of rows x features (reshape(-1, 1) for one)")
    check_arrays(X, y, "X, y")
    X_test = y_test = None
    if spec.data.test_fraction > 0:
        keep, held = split_rows(len(X), spec.data.test_fraction, spec.data.split_seed)
        X, y, X_test, y_test = X[keep], y[keep], X[held], y[held]
    kind = "image" if X.dtype == np.uint8 else "table"
    return RawData(name="arrays", X_train=X, y_train=y, X_test=X_test, y_test=y_test, kind=kind)


def _resolve_classes(spec: Spec, task: str, raw: RawData, y_train: np.ndarray) -> list[str] | None:
    if task == "regression":
        return None
    parts = [a for a in (raw.y_train, raw.y_test) if a is not None]
    if raw.y_train.dtype.kind in "USO":
        # Text labels: classes come from the training rows; unseen labels elsewhere are an error.
        classes = sorted({str(v) for v in np.asarray(y_train).tolist()})
        if task == "binary" and len(classes) != 2:
            raise NetfitError(f"{raw.name}: binary needs exactly 2 labels, found {len(classes)}: "
                              f"{', '.join(classes[:5])}; use task = \"classification\"")
        return classes
    labels = np.concatenate([np.asarray(p).reshape(-1) for p in parts])
    if np.any(np.mod(labels, 1) != 0):
        raise NetfitError(f"{raw.name}: {task} needs whole-number class ids, found {labels[np.mod(labels, 1) != 0][0]}; "
                          "set train.task = \"regression\" for real-valued targets")
    if labels.min() < 0:
        raise NetfitError(f"{raw.name}: class ids must be 0 or more, found {int(labels.min())}; "
                          "relabel the classes as 0..K-1")
    if task == "binary":
        if labels.max() > 1:
            raise NetfitError(f"{raw.name}: binary targets must be 0 or 1, found {int(labels.max())}")
        count = 2
    else:
        count = spec.model.output if isinstance(spec.model.output, int) else int(labels.max()) + 1
        if labels.max() >= count:
            raise NetfitError(f"{raw.name}: label {int(labels.max())} is outside the class range 0..{count - 1} "
                              f"(model.output = {count}); fix the labels or model.output")
    if raw.class_names is not None and len(raw.class_names) == count:
        return list(raw.class_names)
    return [str(i) for i in range(count)]


def _output_size(spec: Spec, task: str, classes: list[str] | None, y_train: np.ndarray) -> int:
    if task == "binary":
        natural = 1
    elif task == "classification":
        natural = len(classes)
    else:
        natural = 1 if y_train.ndim == 1 else y_train.shape[1]
    if isinstance(spec.model.output, int) and spec.model.output != natural and spec.model.module is None:
        raise NetfitError(f"model.output = {spec.model.output} but the {task} targets need {natural} outputs; "
                          'set model.output = "auto"')
    return natural


def _class_ids(y: np.ndarray, classes: list[str] | None, source: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind in "USO":
        index = {c: i for i, c in enumerate(classes or [])}
        unknown = sorted({str(v) for v in y.tolist()} - index.keys())
        if unknown:
            raise NetfitError(f"{source}: label {unknown[0]!r} does not appear in the training rows "
                              f"(known: {', '.join(classes or [])})")
        return np.array([index[str(v)] for v in y.tolist()], dtype=np.int64)
    ids = y.astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= len(classes or [])):
        bad = ids[(ids < 0) | (ids >= len(classes or []))][0]
        raise NetfitError(f"{source}: label {bad} is outside the class range 0..{len(classes or []) - 1}")
    return ids
