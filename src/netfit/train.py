"""The training loop: one step function and the epoch loop around it, top to bottom.

This is the loop every PyTorch tutorial writes by hand (shuffle, forward, loss, backward,
step), with the details that are easy to get wrong done once: a fresh permutation every epoch,
``train()`` for the steps and ``eval()`` for validation, losses accumulated on the device and
read back once per epoch, and the best weights restored when early stopping ends the run.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .errors import NetfitError
from .prepare import Split
from .progress import Progress
from .spec import TrainSpec

__all__ = ["train_step", "fit_network", "evaluate_split", "EpochRecord", "History"]


def train_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimisation step on one batch; returns the batch loss, still on the device."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = loss_fn(logits, y)
    loss.backward()
    optimizer.step()
    return loss.detach()


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


def fit_network(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                train: Split, val: Split | None, recipe: TrainSpec, task: str,
                device: torch.device, progress: Progress,
                on_epoch_end: Callable[[EpochRecord, nn.Module], None] | None = None) -> History:
    """Train ``model`` in place for ``recipe.epochs`` epochs (or until early stopping).

    ``on_epoch_end(record, model)`` runs after each epoch, outside the timed part of it.
    """
    generator = torch.Generator(device="cpu").manual_seed(recipe.seed)
    X, y = train.X.to(device), train.y.to(device)
    n = len(X)
    batch_size = min(recipe.batch_size, n)
    # Drop a trailing batch of one: BatchNorm cannot normalise a single row in train mode.
    steps = n // batch_size + (1 if n % batch_size > 1 else 0)
    history = History(metric_name="val_r2" if task == "regression" else "val_accuracy")
    watch = recipe.early_stopping
    best_score, best_state, waited = -math.inf, None, 0

    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        model.train()  # Dropout on, BatchNorm uses batch statistics
        order = torch.randperm(n, generator=generator).to(device)  # fresh shuffle every epoch
        loss_sum = torch.zeros((), device=device)
        progress.start_epoch(epoch, recipe.epochs, steps)
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            loss = train_step(model, loss_fn, optimizer, X.index_select(0, idx), y.index_select(0, idx))
            loss_sum += loss * len(idx)
            progress.step(step + 1)
        # One host sync per epoch, on purpose: the loss was summed on the device.
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            raise NetfitError(f"training loss became {train_loss} in epoch {epoch}; lower train.lr, check that "
                              "inputs are scaled (data.scaling) and that no row holds extreme values")
        val_loss = val_metric = None
        if val is not None:
            val_loss, val_metric = evaluate_split(model, loss_fn, val, task, device)
        record = EpochRecord(epoch, train_loss, val_loss, val_metric,
                             optimizer.param_groups[0]["lr"], time.perf_counter() - started)
        history.epochs.append(record)
        progress.end_epoch(record, history.metric_name, show=epoch % recipe.print_every == 0
                           or epoch == recipe.epochs)
        if on_epoch_end is not None:
            on_epoch_end(record, model)

        if watch is not None and val is not None:
            score = _score(record, watch.metric)
            if score > best_score + watch.min_delta:
                best_score, waited, history.best_epoch = score, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if waited >= watch.patience:
                    history.stopped_early = True
                    progress.note(f"early stopping after epoch {epoch}: {watch.metric} has not improved for "
                                  f"{watch.patience} epochs; restoring epoch {history.best_epoch}")
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def _score(record: EpochRecord, metric: str) -> float:
    # Higher is better for every watched score: the loss enters negated.
    return -record.val_loss if metric == "val_loss" else record.val_metric


@torch.no_grad()
def evaluate_split(model: nn.Module, loss_fn: nn.Module, split: Split, task: str, device: torch.device,
                   batch_size: int = 8192) -> tuple[float, float]:
    """Mean loss and the task's metric (accuracy, or R^2 in scaled units) on one split, in eval mode."""
    was_training = model.training
    model.eval()  # Dropout off, BatchNorm uses running statistics
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    sq_err = torch.zeros((), device=device)
    y_all = split.y.to(device)
    n = len(split)
    for start in range(0, n, batch_size):
        xb = split.X[start:start + batch_size].to(device)
        yb = y_all[start:start + batch_size]
        logits = model(xb)
        loss_sum += loss_fn(logits, yb) * len(xb)
        if task == "classification":
            correct += (logits.argmax(dim=1) == yb).sum()
        elif task == "binary":
            correct += ((logits > 0).float() == yb).sum()
        else:
            sq_err += ((logits - yb) ** 2).sum()
    model.train(was_training)
    if task == "regression":
        total = ((y_all - y_all.mean(dim=0)) ** 2).sum()
        metric = 1.0 - (sq_err / total).item() if total.item() > 0 else float("nan")
    else:
        metric = correct.item() / n
    return loss_sum.item() / n, metric


