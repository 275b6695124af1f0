"""What a run records as it goes: one record per epoch, the history, and where a run stands."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EpochRecord", "History", "TrainingState", "metric_name"]


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
