"""What a run records as it goes: one record per epoch, the history, and where a run stands."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

__all__ = ["EpochRecord", "History", "TrainingState", "metric_name", "metrics_csv"]


def metric_name(task: str) -> str:
    """The validation metric the loop computes for a task: R^2 for regression, else accuracy."""
    return "val_r2" if task == "regression" else "val_accuracy"


@dataclass
class EpochRecord:
    """One row of ``metrics.csv``."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_metric: float | None
    lr: float
    epoch_time_s: float


@dataclass
class History:
    """Per-epoch records, plus which epoch's weights the model ended with."""

    metric_name: str  # "val_accuracy" or "val_r2"
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    engine: str = "eager"


@dataclass
class TrainingState:
    """Where a run stands, apart from weights, optimizer and RNG states: what a resume needs."""

    epochs_done: int = 0
    steps_into_epoch: int = 0  # steps of epoch ``epochs_done + 1`` already run (0 at an epoch boundary)
    global_step: int = 0
    epoch_loss_sum: float = 0.0  # the summed loss of those steps, so the epoch's mean comes out whole
    history: list[EpochRecord] = field(default_factory=list)
    best_score: float = float("-inf")
    best_epoch: int | None = None
    waited: int = 0  # epochs without improvement, for early stopping
    stopped_early: bool = False


def metrics_csv(records: list[EpochRecord], metric_name: str) -> str:
    """The text of ``metrics.csv``: a header, then one row per record.

    The one formatter of the file: the run's final copy and the live copy a ``"csv"`` log keeps
    both come from here, so the two never differ in columns or number formats. A missing
    validation figure (no validation rows) is an empty cell.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["epoch", "train_loss", "val_loss", metric_name, "lr", "epoch_time_s"])
    for r in records:
        writer.writerow([r.epoch, f"{r.train_loss:.6g}", _fmt(r.val_loss), _fmt(r.val_metric),
                         f"{r.lr:.6g}", f"{r.epoch_time_s:.4f}"])
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
