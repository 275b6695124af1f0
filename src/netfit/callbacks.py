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

from .history import EpochRecord, History, TrainingState, metric_name

if TYPE_CHECKING:
    from .prepare import Split
    from .spec import Spec

__all__ = ["Callback", "Training", "EpochFunction", "BestEpoch", "EarlyStopping"]


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


def _score(record: EpochRecord, metric: str) -> float:
    # Higher is better for every watched score: the loss enters negated.
    return -record.val_loss if metric == "val_loss" else record.val_metric
