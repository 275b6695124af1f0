"""Hooks into the epoch loop, in the spirit of skorch's and Keras's callbacks.

A callback overrides any of four events; each default does nothing::

    on_run_start(training)            before the first epoch (also of a resumed run)
    on_epoch_start(training, epoch)   before the epoch's first step
    on_epoch_end(training, record)    once per epoch, in order, with the epoch's figures
    on_run_end(training)              after the last epoch, the best weights restored

There is no per-batch event: the steps of an epoch run inside the engine without Python hooks.
Reading an epoch's figures back from the device is a host sync, so the loop does it at print
intervals, checkpoints and the end, and every epoch only when a callback says it must
(``syncs_every_epoch``). A callback that does not ask receives its records in order at the next
read-back; one that asks also sees the model with exactly that epoch's weights.

A callback ends a run after the current epoch by setting ``training.stop_reason``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from .distributed import Ranks
from .history import EpochRecord, History, TrainingState, metric_name

if TYPE_CHECKING:
    from .augment import ImageAugment
    from .splits import Split
    from .spec import Spec

__all__ = ["Callback", "Training", "EpochFunction", "BestEpoch", "EarlyStopping", "watched_metric"]


@dataclass
class Training:
    """One training run as the loop and its callbacks see it."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    train: "Split"
    val: "Split | None"
    spec: "Spec"
    task: str  # "classification", "binary" or "regression"
    device: torch.device
    precision: torch.dtype | None = None  # the autocast dtype; None: fp32
    engine: str = "eager"  # the engine asked for; once the run starts, the one running
    run_dir: Path | None = None  # where the run's files go; None when it is not saved
    classes: list[str] | None = None  # class names, index = class id
    say: Callable[[str], None] = print  # one line for the person watching (the loop's progress sets it)
    ranks: Ranks = field(default_factory=Ranks)  # the processes of a torchrun job; one without torchrun
    augment: "ImageAugment | None" = None  # random shifts and flips of training images (data.augment)
    # Made by the loop: the shuffle generator and, for fp16, the gradient scaler (checkpoints record both).
    generator: torch.Generator | None = None
    grad_scaler: torch.amp.GradScaler | None = None
    # Set by the loop as the run goes; callbacks read them, and BestEpoch and EarlyStopping write them.
    state: TrainingState = field(default_factory=TrainingState)
    history: History | None = None
    stop_reason: str | None = None  # set by a callback: the run ends after this epoch
    improved: bool = False  # whether the epoch just read back is the best so far
    best_weights: dict[str, torch.Tensor] | None = None  # kept by BestEpoch when it restores them

    @property
    def epochs(self) -> int:
        return self.spec.train.epochs

    @property
    def metric_name(self) -> str:
        return metric_name(self.task)


class Callback:
    """Base class: override the events you need."""

    # True when on_epoch_end must see every epoch at its end (and the model with its weights).
    syncs_every_epoch = False

    def on_run_start(self, training: Training) -> None:
        pass

    def on_epoch_start(self, training: Training, epoch: int) -> None:
        pass

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        pass

    def on_run_end(self, training: Training) -> None:
        pass


class EpochFunction(Callback):
    """A plain function ``fn(record, network)`` called after every epoch (``netfit.fit(on_epoch_end=...)``)."""

    syncs_every_epoch = True

    def __init__(self, fn: Callable[[EpochRecord, nn.Module], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        self.fn(record, training.model)


def watched_metric(spec: "Spec", task: str) -> str:
    """The validation figure that decides the best epoch: early stopping's, else the task's metric."""
    watch = spec.train.early_stopping
    return watch.metric if watch is not None else metric_name(task)


class BestEpoch(Callback):
    """Tracks the best epoch by ``metric``; with ``restore``, keeps its weights and puts them back at the end."""

    syncs_every_epoch = True  # the model must hold the epoch's weights when they are copied

    def __init__(self, metric: str, min_delta: float = 0.0, restore: bool = False) -> None:
        self.metric, self.min_delta, self.restore = metric, min_delta, restore

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        state, score = training.state, _score(record, self.metric)
        training.improved = score > state.best_score + self.min_delta  # a NaN score never improves
        if training.improved:
            state.best_score, state.waited, state.best_epoch = score, 0, record.epoch
            training.history.best_epoch = record.epoch
            if self.restore:
                training.best_weights = copy.deepcopy(training.model.state_dict())
        else:
            state.waited += 1

    def on_run_end(self, training: Training) -> None:
        if self.restore and training.best_weights is not None:
            training.model.load_state_dict(training.best_weights)


class EarlyStopping(Callback):
    """Ends the run when the watched figure has not improved for ``patience`` epochs (BestEpoch counts them)."""

    syncs_every_epoch = True

    def __init__(self, metric: str, patience: int) -> None:
        self.metric, self.patience = metric, patience

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        if training.state.waited >= self.patience:
            training.state.stopped_early = training.history.stopped_early = True
            training.stop_reason = (f"early stopping after epoch {record.epoch}: {self.metric} has not improved for "
                                    f"{self.patience} epochs; restoring epoch {training.history.best_epoch}")


def _score(record: EpochRecord, metric: str) -> float:
    # Higher is better for every watched score: the loss enters negated.
    return -record.val_loss if metric == "val_loss" else record.val_metric
