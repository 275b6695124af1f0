"""A trained network together with what it needs to predict: scalers, classes and the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.images import image_rows
from .errors import NetfitError
from .features import Features
from .metrics import classification_report, regression_report
from .preparation import Preparation
from .spec import Spec

__all__ = ["TrainedModel"]


class TrainedModel:
    """A network that predicts from raw rows: it scales inputs and decodes outputs itself.

    ``network`` is a plain ``torch.nn.Module`` returning logits, for use in your own code.
    ``predict`` returns class labels (or values, for regression) and ``predict_proba`` class
    probabilities; both take NumPy arrays or tensors of raw, unscaled rows.
    """

    def __init__(self, network: nn.Module, spec: Spec, preparation: Preparation,
                 metrics: dict[str, float] | None = None, run_dir: Path | None = None) -> None:
        self.network = network.eval()
        self.spec = spec
        self.preparation = preparation
        self.metrics = dict(metrics or {})
        self.run_dir = run_dir

    @property
    def task(self) -> str:
        return self.preparation.task

    @property
    def classes(self) -> list[str] | None:
        """Class labels in class-id order (None for regression)."""
        return self.preparation.classes

    def __repr__(self) -> str:
        where = f", run_dir={str(self.run_dir)!r}" if self.run_dir else ""
        return f"TrainedModel(task={self.task!r}, input={self.preparation.input_size}{where})"

    def logits(self, X: Any, *, source: str = "input", first_row: int = 0) -> torch.Tensor:
        """Raw network outputs for raw rows ``X`` (scaled here as the training rows were).

        ``source`` and ``first_row`` name the rows in messages (a file, and where this chunk of it starts).
        """
        if self.preparation.image is not None:
            X = image_rows(X, self.preparation.image)
        return self.logits_of_features(self.preparation.encode_features(self._rows(X), source, first_row))

    def _rows(self, X: Any) -> Any:
        # A table with a column encoder takes named columns (a pyarrow Table, a dict, a DataFrame) as they are.
        return X if self.preparation.encoder is not None and not isinstance(X, (np.ndarray, torch.Tensor)) \
            else _to_numpy(X)

    @torch.no_grad()
    def logits_of_features(self, features: torch.Tensor | Features, batch_size: int = 2048) -> torch.Tensor:
        """Raw network outputs for rows already encoded by ``preparation`` (stored features, unscaled)."""
        # Eval mode, no autograd, large batches: prediction needs none of training's machinery.
        device = next(self.network.parameters()).device
        self.network.eval()
        scaler = self.preparation.input_scaler

        def batch(rows: slice):
            if isinstance(features, Features):
                return features.take(rows).to(device)
            return scaler.apply(features[rows].to(device))

        outs = [self.network(batch(slice(i, i + batch_size))) for i in range(0, len(features), batch_size)]
        return torch.cat(outs).float().cpu() if outs else torch.zeros(0, self.preparation.output_size)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (rows, classes); softmax (or sigmoid) is applied only here."""
        if self.task == "regression":
            raise TypeError("predict_proba is for classification; this model does regression")
        return self.proba_from_logits(self.logits(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels as the training rows gave them (class ids, text or whole numbers), or values.

        Regression with several targets returns one column per target.
        """
        return self.predictions_from_logits(self.logits(X))

    def predictions_from_logits(self, z: torch.Tensor) -> np.ndarray:
        """What ``predict`` returns, from logits already computed (one forward pass for both outputs)."""
        ids_or_values = self._decode(z)
        if self.task == "regression":
            return ids_or_values
        return self.preparation.decode_labels(ids_or_values)

    def proba_from_logits(self, z: torch.Tensor) -> np.ndarray:
        """What ``predict_proba`` returns, from logits already computed."""
        if self.task == "binary":
            p = torch.sigmoid(z)
            return torch.cat([1 - p, p], dim=1).numpy()
        return torch.softmax(z, dim=1).numpy()

    def evaluate(self, X: Any, y: Any) -> dict[str, Any]:
        """Full report on labelled rows: a classification report, or MAE, RMSE and R^2."""
        if self.preparation.image is not None:
            X = image_rows(X, self.preparation.image)
        X, y = self._rows(X), _to_numpy(y)
        if len(X) != len(y):
            raise NetfitError(f"evaluate got {len(X)} rows of features but {len(y)} targets; give one target per row")
        features = self.preparation.encode_features(X, "input")
        return self.report(features, self.preparation.encode_targets(y, "targets"))

    def report(self, features: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """The report for rows already encoded by ``preparation`` (stored features, target ids)."""
        z = self.logits_of_features(features)
        if self.task == "regression":
            truth = self.preparation.target_scaler.inverse(targets.numpy())
            return regression_report(truth, self._decode(z), self.preparation.target_names)
        return classification_report(targets.numpy().reshape(-1).astype(np.int64), self._decode(z), self.classes)

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        if self.task == "regression":
            values = self.preparation.target_scaler.inverse(z.numpy())
            return values[:, 0] if values.shape[1] == 1 else values
        if self.task == "binary":
            return (z[:, 0] > 0).long().numpy()
        return z.argmax(dim=1).numpy()


def _to_numpy(X: Any) -> np.ndarray:
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return np.asarray(X)
