"""What a trained model knows about its data: the task, the classes, the columns and the scalers.

A :class:`Preparation` is decided once, from training rows only, when a run starts; it is saved in
``run.json`` and read back by ``load``, ``evaluate`` and ``predict``, which treat new rows exactly
as the training rows were treated. Read back, it is untrusted data like everything in a run folder,
so :meth:`Preparation.from_dict` validates every field and how the fields fit together before any
is used.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from .encoder import ColumnEncoder
from .data.checks import check_arrays
from .data.images import ImageGeometry
from .errors import NetfitError, UnseenValuesWarning
from .features import Features, InputLayout
from .scaling import Scaler
from .spec import MAX_WIDTH
from .storage import arrays_sha256

__all__ = ["Preparation", "encoded_sha256"]

TASKS = ("classification", "binary", "regression")
# How class labels were given: "ids" (0..K-1, returned as such), "text" (returned as text) or
# "integers" (whole numbers that are not 0..K-1, such as -1/1 or 3..8: returned as those numbers).
LABEL_KINDS = ("ids", "text", "integers")


@dataclass
class Preparation:
    """What a trained model needs to know about its data: saved with every run."""

    task: str  # "classification", "binary" or "regression"
    input_size: int
    output_size: int
    classes: list[str] | None  # class labels, index = class id (None for regression)
    input_scaler: Scaler
    target_scaler: Scaler  # identity unless regression targets were standardized
    dataset: str
    task_reason: str = ""  # why this task: set in the spec, or what was inferred from the targets
    labels: str | None = None  # one of LABEL_KINDS for classes; None for regression
    feature_names: list[str] | None = None  # the input columns in the network's order, when known
    target_names: list[str] | None = None  # the target columns, when known
    test_sha256: str | None = None  # the test part as read when training, so evaluate can tell it changed
    image: ImageGeometry | None = None  # how image files became rows, so new images are read alike; else None
    # Tables with categorical or text columns, or missing cells filled in: the fitted column
    # transforms. feature_names are then the raw columns, and input_size the encoded width.
    encoder: ColumnEncoder | None = None

    @property
    def layout(self) -> InputLayout | None:
        """What the network's first layer reads, for a table with an encoder (None: a plain tensor)."""
        return self.encoder.layout if self.encoder is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "task_reason": self.task_reason,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "classes": self.classes,
            "labels": self.labels,
            "input_scaler": self.input_scaler.to_dict(),
            "target_scaler": self.target_scaler.to_dict(),
            "dataset": self.dataset,
            "feature_names": self.feature_names,
            "target_names": self.target_names,
            "test_sha256": self.test_sha256,
            "encoder": None if self.encoder is None else self.encoder.to_dict(),
            "image": None if self.image is None else self.image.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: Any, source: str = "preparation") -> "Preparation":
        """Validate a saved preparation (every field, and how they fit together); NetfitError if it is wrong."""
        try:
            record = _Record.model_validate(raw)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            shown = "" if isinstance(first.get("input"), (dict, list)) else f" = {first.get('input')!r}"
            raise NetfitError(f"{source}: {where or 'preparation'}{shown}: {first['msg']}; the run folder was "
                              "edited or damaged, train it again") from None
        problem = record.problem()
        if problem:
            raise NetfitError(f"{source}: {problem}; the run folder was edited or damaged, train it again")
        prepared = cls(
            task=record.task, task_reason=record.task_reason, input_size=record.input_size,
            output_size=record.output_size, classes=record.classes, labels=record.labels,
            input_scaler=record.input_scaler.scaler(), target_scaler=record.target_scaler.scaler(),
            dataset=record.dataset, feature_names=record.feature_names, target_names=record.target_names,
            test_sha256=record.test_sha256,
            encoder=None if record.encoder is None else ColumnEncoder.from_dict(record.encoder, source),
            image=None if record.image is None else ImageGeometry(**record.image.model_dump()),
        )
        encoded = prepared.encoder
        if encoded is not None and (encoded.layout.width != prepared.input_size
                                    or prepared.feature_names != encoded.names
                                    or prepared.input_scaler.method != "none"):
            raise NetfitError(f"{source}: the column encoder does not agree with input_size, feature_names or "
                              "input_scaler; the run folder was edited or damaged, train it again")
        return prepared

    # ------------------------------------------------------------------------- encoding rows

    def encode_targets(self, y: np.ndarray, source: str) -> torch.Tensor:
        """Targets in the units and dtype the loss expects (class ids, or scaled floats)."""
        y = np.asarray(y)
        if self.task == "regression":
            if y.dtype.kind in "USO":
                raise NetfitError(f"{source}: regression targets must be numbers, found text such as "
                                  f"{str(y.reshape(-1)[0])!r}")
            y2 = y.astype(np.float32).reshape(len(y), -1)
            if y2.shape[1] != self.output_size:
                raise NetfitError(f"{source}: targets have {y2.shape[1]} columns but the model predicts "
                                  f"{self.output_size}")
            return torch.from_numpy(self.target_scaler.transform(y2))
        if y.ndim > 1 and y.reshape(len(y), -1).shape[1] != 1:
            raise NetfitError(f"{source}: targets have shape {y.shape}, but classes need one label per row")
        ids = self.class_ids(y.reshape(-1), source)
        if self.task == "binary":
            return torch.from_numpy(ids.astype(np.float32)).reshape(-1, 1)
        return torch.from_numpy(ids)

    def class_ids(self, y: np.ndarray, source: str) -> np.ndarray:
        """Labels as given (ids, text or whole numbers) -> class ids 0..K-1; unknown labels are refused."""
        classes = self.classes or []
        if self.labels in ("text", "integers"):
            keys = y.astype(str) if self.labels == "text" else _whole_numbers(y, source).astype(np.int64).astype(str)
            index = {c: i for i, c in enumerate(classes)}
            unknown = sorted(set(np.unique(keys).tolist()) - index.keys())
            if unknown:
                raise NetfitError(f"{source}: label {unknown[0]!r} does not appear in the training rows "
                                  f"(known: {', '.join(classes[:20])}{', ...' if len(classes) > 20 else ''}); a "
                                  "model cannot learn a class it never saw: drop those rows, or for a held-out part, "
                                  "drop classes this rare or change data.split_seed")
            return np.array([index[k] for k in keys.tolist()], dtype=np.int64)
        if y.dtype.kind in "USO":
            raise NetfitError(f"{source}: this model was trained on class ids 0..{len(classes) - 1}, but the labels "
                              f"given are text (the first is {str(y[0])!r}); give the labels as numbers")
        ids = _whole_numbers(y, source).astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(classes)):
            bad = ids[(ids < 0) | (ids >= len(classes))][0]
            raise NetfitError(f"{source}: label {bad} is outside the class range 0..{len(classes) - 1}")
        return ids

    def decode_labels(self, ids: np.ndarray) -> np.ndarray:
        """Class ids -> the labels users gave: ids, text, or their own whole numbers."""
        if self.labels == "text":
            return np.array(self.classes, dtype=object)[ids]
        if self.labels == "integers":
            return np.array([int(c) for c in self.classes], dtype=np.int64)[ids]
        return ids

    def encode_features(self, X: Any, source: str, first_row: int = 0) -> torch.Tensor | Features:
        """Stored features (uint8 kept, else float32), unscaled, checked against the input width.

        With an encoder, raw table rows (a pyarrow Table, a dict of columns, a DataFrame, or an
        array of the numeric columns in order) become encoded :class:`Features`. ``first_row`` numbers
        the first row of ``X`` in ``source`` (a chunk of a larger file), for messages.
        """
        if self.encoder is not None:
            features, unseen = self.encoder.transform(X, source, first_row)
            if unseen:
                warnings.warn(UnseenValuesWarning(source, unseen), stacklevel=3)
            return self._stored(features)
        X = np.asarray(X)
        if X.ndim == 1:
            raise NetfitError(f"{source}: X has shape {X.shape}; pass a 2-D array of rows x features "
                              "(X.reshape(1, -1) for a single row)")
        if X.ndim > 2:
            X = X.reshape(len(X), -1)
        if X.ndim == 2 and X.shape[1] != self.input_size:
            raise NetfitError(f"{source}: rows have {X.shape[1]} features but the model expects {self.input_size}; "
                              "give the same columns the model was trained on")
        # What training refused (NaN, text, no rows) is refused here too: a NaN row has no class.
        check_arrays(X, None, source, self.feature_names, first_row=first_row)
        stored = X if X.dtype == np.uint8 else X.astype(np.float32, copy=False)  # float32 rows: no copy
        return torch.from_numpy(np.ascontiguousarray(stored))


    def _stored(self, features: Features) -> torch.Tensor | Features:
        # Numbers and one-hot columns only: a plain tensor, for a plain network.
        return features.dense if self.encoder.layout.plain else features

    def part_sha256(self, X: Any, y: np.ndarray | None) -> str:
        """SHA-256 of a part of the data (the test part), as encoded when there is an encoder."""
        if self.encoder is None:
            return arrays_sha256(X, y)
        return encoded_sha256(self._stored(self.encoder.transform(X, "the test part")[0]), y)


def encoded_sha256(encoded: torch.Tensor | Features, y: np.ndarray | None) -> str:
    """SHA-256 of rows as ``Preparation.encode_features`` returned them, with their targets."""
    arrays = encoded.arrays() if isinstance(encoded, Features) else [encoded.numpy()]
    return arrays_sha256(*arrays, y)


def _whole_numbers(y: np.ndarray, source: str) -> np.ndarray:
    if y.dtype.kind in "USO":
        try:
            y = y.astype(np.float64)
        except ValueError:
            raise NetfitError(f"{source}: labels must be whole numbers, found {str(y[0])!r}") from None
    if y.dtype.kind == "f" and len(y) and not np.all(np.mod(y, 1) == 0):
        raise NetfitError(f"{source}: class labels must be whole numbers, found {y[np.mod(y, 1) != 0][0]}")
    return y


# ----------------------------------------------------------------------------- the saved form, validated


class _Strict(BaseModel):
    # A run folder is untrusted: no coercion ("2" is not 2), no unknown keys.
    model_config = ConfigDict(extra="forbid", strict=True)


class _ScalerRecord(_Strict):
    method: Literal["none", "divide_by_255", "standardize"]
    shift: list[StrictFloat] | None
    scale: list[StrictFloat] | None

    def problem(self, width: int, name: str) -> str | None:
        if self.method == "none":
            return None if self.shift is None and self.scale is None else f"{name}: method 'none' has no statistics"
        if self.shift is None or self.scale is None:
            return f"{name}: method {self.method!r} needs shift and scale"
        allowed = (1,) if self.method == "divide_by_255" else (width,)
        if len(self.shift) not in allowed or len(self.scale) not in allowed:
            return (f"{name}: shift and scale have {len(self.shift)} and {len(self.scale)} values but the "
                    f"{self.method} scaling of this run needs {allowed[0]}")
        if not all(math.isfinite(v) for v in self.shift) or not all(math.isfinite(v) and v > 0 for v in self.scale):
            return f"{name}: shift must be finite and scale finite and positive"
        return None

    def scaler(self) -> Scaler:
        def arr(values):
            return None if values is None else np.asarray(values, dtype=np.float32)
        return Scaler(self.method, arr(self.shift), arr(self.scale))


class _ImageRecord(_Strict):
    height: StrictInt = Field(gt=0, le=65_536)
    width: StrictInt = Field(gt=0, le=65_536)
    mode: Literal["L", "RGB"]
    resized: StrictBool


class _Record(_Strict):
    task: Literal[TASKS]  # type: ignore[valid-type]
    task_reason: StrictStr = Field(max_length=1000)
    input_size: StrictInt = Field(gt=0, le=MAX_WIDTH)
    output_size: StrictInt = Field(gt=0, le=MAX_WIDTH)
    classes: list[StrictStr] | None
    labels: Literal[LABEL_KINDS] | None  # type: ignore[valid-type]
    input_scaler: _ScalerRecord
    target_scaler: _ScalerRecord
    dataset: StrictStr = Field(max_length=1000)
    feature_names: list[StrictStr] | None
    target_names: list[StrictStr] | None
    test_sha256: StrictStr | None = Field(pattern=r"^[0-9a-f]{64}$")
    encoder: dict[str, Any] | None = None  # validated by ColumnEncoder.from_dict
    image: _ImageRecord | None = None  # absent in runs of other data

    def problem(self) -> str | None:
        """How the fields disagree with each other, or None."""
        if self.task == "regression":
            if self.classes is not None or self.labels is not None:
                return "a regression run has no classes"
        else:
            if self.classes is None or self.labels is None:
                return f"a {self.task} run needs its classes and how its labels were given"
            wanted = 2 if self.task == "binary" else self.output_size
            if self.task == "binary" and self.output_size != 1:
                return f"output_size = {self.output_size}: a binary run has one output"
            if len(self.classes) != wanted:
                return f"classes has {len(self.classes)} entries but this {self.task} run has {wanted}"
            if len(set(self.classes)) != len(self.classes):
                return "classes names a class twice"
            if self.labels == "integers" and not all(_is_int_text(c) for c in self.classes):
                return "classes of whole-number labels must be whole numbers"
        if self.feature_names is not None and len(self.feature_names) != self.input_size and self.encoder is None:
            return f"feature_names has {len(self.feature_names)} names but input_size is {self.input_size}"
        names = (self.feature_names or []) + (self.target_names or [])
        if len(set(names)) != len(names):
            repeated = next(n for n in names if names.count(n) > 1)
            return f"feature_names and target_names name the column {repeated!r} twice"
        if self.target_names is not None and self.task == "regression" and len(self.target_names) != self.output_size:
            return f"target_names has {len(self.target_names)} names but the run predicts {self.output_size} targets"
        if self.image is not None:
            image = ImageGeometry(**self.image.model_dump())
            if image.features != self.input_size:
                return (f"image: {image.describe()} images have {image.features} pixel values but input_size is "
                        f"{self.input_size}")
        if self.target_scaler.method == "divide_by_255" or (self.task != "regression"
                                                           and self.target_scaler.method != "none"):
            return f"target_scaler: method {self.target_scaler.method!r} does not apply to a {self.task} run"
        return self.input_scaler.problem(self.input_size, "input_scaler") or \
            self.target_scaler.problem(self.output_size, "target_scaler")


def _is_int_text(text: str) -> bool:
    try:
        return str(int(text)) == text
    except ValueError:
        return False
