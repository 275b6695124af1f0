"""What a finished run is judged on: its test part read again, and the network's answers on it.

The test part is the only part of the data a finished run can re-create and prove unchanged:
``run.json`` records its hash (``preparation.test_sha256``). ``netfit evaluate RUN`` and the run
report (``report.py``) both read it here, so both refuse the same changed data for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import NetfitError

__all__ = ["TestPart", "TestPartUnavailable", "Predictions", "load_test_part", "predict_rows", "predict_split"]


class TestPartUnavailable(NetfitError):
    """The run's test part cannot be read again; ``reason`` says why, without what ``evaluate`` suggests."""

    def __init__(self, reason: str, remedy: str) -> None:
        super().__init__(f"{reason}; {remedy}")
        self.reason = reason


@dataclass
class TestPart:
    """The run's test rows as read from its data (raw: unscaled, labels as given), checked unchanged.

    ``train_rows`` and ``val_rows``: how many rows the run trained and validated on, counted from
    the same read of the data.
    """

    X: Any  # an array, or a pyarrow Table for a table with text columns
    y: np.ndarray
    source: str
    train_rows: int
    val_rows: int


def load_test_part(model, data_dir: Path | None = None) -> TestPart:
    """Read the test part of ``model``'s run (a :class:`~netfit.trained.TrainedModel`) again.

    Raises :class:`TestPartUnavailable` when the run has no test part, was trained on in-memory
    arrays, or its data now gives other rows than the ones the run recorded; ``data_dir`` says
    where a built-in dataset's IDX files now live.
    """
    from .data import load_raw, split_rows

    data_spec = model.spec.data
    if data_spec.dataset is None and data_spec.path is None:
        raise TestPartUnavailable("this run was trained on in-memory arrays",
                                  "pass labelled rows with --data FILE")
    if data_dir is not None:
        data_spec = data_spec.model_copy(update={"data_dir": data_dir})
    recorded = model.preparation.test_sha256
    if recorded is None:
        raise TestPartUnavailable("the run's data has no test part (no data.test_path or data.test_fraction)",
                                  "pass labelled rows with --data FILE")
    raw = load_raw(data_spec, model.preparation.feature_names)  # by name: a reordered file is the same data
    where = data_spec.test_path or data_spec.path or data_spec.dataset
    if raw.X_test is None or model.preparation.part_sha256(raw.X_test, raw.y_test) != recorded:
        rows = "no test part" if raw.X_test is None else f"a test part of {len(raw.X_test)} rows"
        raise TestPartUnavailable(
            f"the run's test data has changed since training: {where} now gives {rows} that differ from the rows "
            f"the run was tested on (recorded in {model.run_dir / 'run.json'})",
            "restore the data, or evaluate on a file of your choice with --data FILE")
    keep, held = split_rows(len(raw.X_train), data_spec.val_fraction, data_spec.split_seed)
    return TestPart(raw.X_test, raw.y_test, f"{where} (test part)", len(keep), len(held))


@dataclass
class Predictions:
    """The network's answers on labelled rows beside the truth, in the units a person reads.

    Classes: ``truth`` and ``predicted`` are class ids (rows,), ``proba`` is (rows, classes).
    Regression: ``truth`` and ``predicted`` are (rows, targets) in the targets' own units, ``proba``
    is None. ``pixels`` holds the rows' uint8 values when they are images (else None), so that
    mistakes can be shown as pictures.
    """

    truth: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray | None
    pixels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.truth)


def predict_rows(model, X: Any, y: Any, source: str) -> Predictions:
    """Predictions on raw rows ``X`` with their labels ``y``, read as the run reads new rows."""
    from .data.images import image_rows

    if model.preparation.image is not None:
        X = image_rows(X, model.preparation.image)
    rows = X if not isinstance(X, (np.ndarray, torch.Tensor)) else np.asarray(X)
    features = model.preparation.encode_features(rows, source)
    return _predictions(model, features, model.preparation.encode_targets(np.asarray(y), source), source)


def predict_split(model, split, source: str) -> Predictions:
    """Predictions on a part as training holds it (a :class:`~netfit.splits.Split`: encoded rows)."""
    return _predictions(model, split.X, split.y, source)


def _predictions(model, features, targets: torch.Tensor, source: str) -> Predictions:
    z = model.logits_of_features(features)
    # Stored images stay uint8 (scaled per batch), so the stored rows are the pixels themselves.
    pixels = features.numpy() if isinstance(features, torch.Tensor) and features.dtype == torch.uint8 else None
    if model.task == "regression":
        truth = model.preparation.target_scaler.inverse(targets.cpu().numpy())
        predicted = model.preparation.target_scaler.inverse(z.numpy())
        return Predictions(truth, predicted, None, pixels, source)
    proba = model.proba_from_logits(z)
    # argmax of [1 - p, p] is the binary decision p > 0.5, i.e. logit > 0, as predict makes it.
    return Predictions(targets.cpu().numpy().reshape(-1).astype(np.int64), proba.argmax(axis=1), proba, pixels,
                       source)
