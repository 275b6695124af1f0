"""The training loop: one step function and the epoch loop around it, top to bottom.

This is the loop every PyTorch tutorial writes by hand (shuffle, forward, loss, backward,
step), with the details that are easy to get wrong done once: a fresh permutation every epoch,
``train()`` for the steps and ``eval()`` for validation, losses accumulated on the device and
read back once per print interval, and the best weights restored when early stopping ends the
run. How the steps of an epoch are executed (eagerly, compiled, or replayed as a CUDA graph) is
the engine's business (``engines.py``); every engine runs this same ``train_step``.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .engines import StepPlan, choose_engine
from .errors import NetfitError
from .prepare import Split
from .progress import Progress
from .schedules import lr_table
from .spec import TrainSpec

__all__ = ["train_step", "fit_network", "evaluate_split", "EpochRecord", "History", "steps_per_epoch"]


def train_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor, clip_grad_norm: float | None = None,
               autocast_dtype: torch.dtype | None = None,
               grad_scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """One optimisation step on one batch; returns the batch loss, still on the device."""
    optimizer.zero_grad(set_to_none=True)
    with _autocast(x.device, autocast_dtype):
        logits = model(x)
    # The loss is reduced in fp32 whatever the compute precision: logits go in, never probabilities.
    loss = loss_fn(logits.float(), y)
    if grad_scaler is None:
        loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
    else:  # fp16: scale the loss so small gradients do not underflow; skip steps that overflow
        grad_scaler.scale(loss).backward()
        if clip_grad_norm is not None:
            grad_scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        grad_scaler.step(optimizer)
        grad_scaler.update()
    return loss.detach()


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def steps_per_epoch(rows: int, batch_size: int) -> tuple[int, int]:
    """Full batches per epoch and the size of the last, partial one (0 if none is run).

    A trailing batch of one row is dropped: BatchNorm cannot normalise a single row in train mode.
    """
    batch_size = min(batch_size, rows)
    full, rest = divmod(rows, batch_size)
    return full, (rest if rest > 1 else 0)


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
class _Pending:
    """An epoch's figures still on the device, read back at the next print interval."""

    epoch: int
    loss_sum: torch.Tensor
    val: tuple[torch.Tensor, torch.Tensor] | None
    lr: float
    timer: "_EpochTimer"


def fit_network(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                train: Split, val: Split | None, recipe: TrainSpec, task: str,
                device: torch.device, progress: Progress,
                on_epoch_end: Callable[[EpochRecord, nn.Module], None] | None = None,
                autocast_dtype: torch.dtype | None = None, engine: str = "eager") -> History:
    """Train ``model`` in place for ``recipe.epochs`` epochs (or until early stopping).

    ``on_epoch_end(record, model)`` runs after each epoch, outside the timed part of it.
    """
    train = train.to(device)  # the whole training set lives on the device: no per-batch copies
    val = val.to(device) if val is not None else None
    full, rest = steps_per_epoch(len(train), recipe.batch_size)
    batch_size = min(recipe.batch_size, len(train))
    rates = lr_table(recipe.schedule, recipe.lr, full + (rest > 0), recipe.epochs)
    grad_scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    plan = StepPlan(model, loss_fn, optimizer, train, batch_size, full, rest, rates,
                    recipe.clip_grad_norm, autocast_dtype, grad_scaler)
    engine, reason = choose_engine(engine, plan, device)
    history = History(metric_name="val_r2" if task == "regression" else "val_accuracy", engine=engine.name)
    if reason:
        progress.note(reason)

    # The permutation is drawn on the training device from the run's seed: no host work per epoch.
    generator = torch.Generator(device=device).manual_seed(recipe.seed)
    watch = recipe.early_stopping
    best_score, best_state, waited = -math.inf, None, 0
    pending: list[_Pending] = []

    for epoch in range(1, recipe.epochs + 1):
        timer = _EpochTimer(device)
        model.train()  # Dropout on, BatchNorm uses batch statistics
        order = torch.randperm(len(train), generator=generator, device=device)  # fresh shuffle every epoch
        progress.start_epoch(epoch, recipe.epochs, full + (rest > 0))
        loss_sum = engine.run_epoch(order, progress.step)
        timer.stop()
        for note in engine.notes:
            progress.note(note)
        engine.notes.clear()
        val_figures = evaluate_split(model, loss_fn, val, task) if val is not None else None
        pending.append(_Pending(epoch, loss_sum, val_figures, float(rates[min(epoch * (full + (rest > 0)),
                                                                               len(rates)) - 1]), timer))

        # Host syncs happen here on purpose: at print intervals, at the end, and every epoch only
        # when early stopping or an on_epoch_end callback needs the figures.
        last = epoch == recipe.epochs
        if epoch % recipe.print_every == 0 or last or watch is not None or on_epoch_end is not None:
            for record in _read_back(pending, len(train)):
                history.epochs.append(record)
                progress.end_epoch(record, history.metric_name,
                                   show=record.epoch % recipe.print_every == 0 or record.epoch == recipe.epochs)
                if on_epoch_end is not None:
                    on_epoch_end(record, model)
            pending.clear()
        else:
            progress.end_epoch(None, history.metric_name, show=False)

        if watch is not None and val is not None:
            record = history.epochs[-1]
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
    history.engine = engine.name
    return history


def _read_back(pending: list[_Pending], rows: int) -> list[EpochRecord]:
    """Turn pending device figures into records with one host sync for all of them."""
    tensors = [p.loss_sum for p in pending] + [t for p in pending if p.val is not None for t in p.val]
    values = torch.stack([t.float().reshape(()) for t in tensors]).tolist()  # the sync
    losses, vals = values[:len(pending)], iter(values[len(pending):])
    records = []
    for p, loss_sum in zip(pending, losses):
        train_loss = loss_sum / rows
        if not math.isfinite(train_loss):
            raise NetfitError(f"training loss became {train_loss} by epoch {p.epoch}; lower train.lr, check "
                              "that inputs are scaled (data.scaling) and that no row holds extreme values")
        val_loss = val_metric = None
        if p.val is not None:
            val_loss, val_metric = next(vals), next(vals)
        records.append(EpochRecord(p.epoch, train_loss, val_loss, val_metric, p.lr, p.timer.seconds()))
    return records


def _score(record: EpochRecord, metric: str) -> float:
    # Higher is better for every watched score: the loss enters negated.
    return -record.val_loss if metric == "val_loss" else record.val_metric


class _EpochTimer:
    """Wall time of an epoch's device work, read without forcing a sync at the epoch's end."""

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        if self._cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record()
        self._t0 = time.perf_counter()
        self._elapsed: float | None = None

    def stop(self) -> None:
        if self._cuda:
            self._end.record()
        else:
            self._elapsed = time.perf_counter() - self._t0

    def seconds(self) -> float:
        if self._elapsed is None:
            self._end.synchronize()
            self._elapsed = self._start.elapsed_time(self._end) / 1000.0
        return self._elapsed


@torch.no_grad()
def evaluate_split(model: nn.Module, loss_fn: nn.Module, split: Split, task: str,
                   batch_size: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and the task's metric (accuracy, or R^2) on one split, in eval mode, on the device.

    Both come back as 0-dim device tensors: the caller decides when to pay for reading them.
    Batches of 2048 rows keep the float32 copies of the inputs small next to the uint8 data.
    """
    was_training = model.training
    model.eval()  # Dropout off, BatchNorm uses running statistics
    device = split.X.device
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device)
    n = len(split)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        logits = model(split.inputs(rows)).float()
        yb = split.y[rows]
        loss_sum += loss_fn(logits, yb) * len(yb)
        if task == "classification":
            hits += (logits.argmax(dim=1) == yb).sum()
        elif task == "binary":
            hits += ((logits > 0).float() == yb).sum()
        else:
            hits += ((logits - yb) ** 2).sum()  # squared error, turned into R^2 below
    model.train(was_training)
    if task == "regression":
        total = ((split.y - split.y.mean(dim=0)) ** 2).sum()
        metric = 1.0 - hits / total
    else:
        metric = hits / n
    return loss_sum / n, metric
