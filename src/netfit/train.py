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
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .engines import StepPlan, choose_engine
from .history import EpochRecord, History, TrainingState
from .step import steps_per_epoch, train_step  # noqa: F401  (re-exported for now)
from .errors import NetfitError, TrainingInterrupted
from .prepare import Split
from .progress import Progress
from .schedules import lr_table
from .signals import EXIT_CODES, stop_on_signals
from .spec import TrainSpec
from .streaming import StreamedRows

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, Checkpointer

__all__ = ["train_step", "fit_network", "evaluate_split", "EpochRecord", "History", "TrainingState",
           "steps_per_epoch"]


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
                autocast_dtype: torch.dtype | None = None, engine: str = "eager",
                checkpoints: "Checkpointer | None" = None, resume: "Checkpoint | None" = None) -> History:
    """Train ``model`` in place for ``recipe.epochs`` epochs (or until early stopping).

    ``on_epoch_end(record, model)`` runs after each epoch, outside the timed part of it.
    With ``checkpoints``, a resumable checkpoint is written every ``recipe.checkpoint_every``
    epochs, at the end and on SIGINT/SIGTERM, and the best epoch's weights are kept apart;
    ``resume`` continues from such a checkpoint exactly where it was written.
    """
    train = train.to(device)  # the whole training set lives on the device: no per-batch copies
    val = val.to(device) if val is not None else None
    full, rest = steps_per_epoch(len(train), recipe.batch_size)
    steps = full + (rest > 0)
    batch_size = min(recipe.batch_size, len(train))
    rates = lr_table(recipe.schedule, recipe.lr, steps, recipe.epochs)
    grad_scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    # The permutation is drawn on the training device from the run's seed: no host work per epoch.
    generator = torch.Generator(device=device).manual_seed(recipe.seed)
    state = TrainingState()
    if resume is not None:
        state = resume.training_state()
        resume.restore(model, optimizer, generator, grad_scaler)
    plan = StepPlan(model, loss_fn, optimizer, train, batch_size, full, rest, rates, recipe.clip_grad_norm,
                    autocast_dtype, grad_scaler, first_step=state.global_step,
                    skip_nonfinite=recipe.on_nonfinite == "skip_step")
    engine, reason = choose_engine(engine, plan, device)
    history = History(metric_name="val_r2" if task == "regression" else "val_accuracy", engine=engine.name,
                      epochs=list(state.history), best_epoch=state.best_epoch)
    if reason:
        progress.note(reason)

    watch = recipe.early_stopping
    watched = watch.metric if watch is not None else history.metric_name
    min_delta = watch.min_delta if watch is not None else 0.0
    track_best = val is not None and (watch is not None or checkpoints is not None)
    best_state = resume.best_weights() if watch is not None and resume is not None else None
    pending: list[_Pending] = []

    def save(position: TrainingState, shuffle_state: torch.Tensor) -> Path:
        return checkpoints.save(position, model, optimizer, shuffle_state, grad_scaler, engine.name, best_state)

    def read_back(last_step: int) -> None:
        # Host syncs happen here on purpose: at print intervals, at checkpoints, at the end, and
        # every epoch only when early stopping, checkpoints or a callback need the figures.
        weights_finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
        records, first_bad, finite_weights = _read_back(pending, len(train), engine.first_bad_step, weights_finite)
        if not plan.skip_nonfinite and (first_bad >= 0 or not finite_weights):
            # No bad loss yet, yet bad weights: the gradients of the last step run were not finite.
            at = first_bad if first_bad >= 0 else last_step
            raise _nonfinite_error(at, steps, recipe, checkpoints)
        pending.clear()
        for record in records:
            history.epochs.append(record)
            progress.end_epoch(record, history.metric_name,
                               show=record.epoch % recipe.print_every == 0 or record.epoch == recipe.epochs)
            if on_epoch_end is not None:
                on_epoch_end(record, model)

    with stop_on_signals(enabled=checkpoints is not None) as stop:
        last_epoch = state.epochs_done if state.stopped_early else recipe.epochs  # a resume may only finish
        for epoch in range(state.epochs_done + 1, last_epoch + 1):
            timer = _EpochTimer(device)
            model.train()  # Dropout on, BatchNorm uses batch statistics
            shuffle_state = generator.get_state()  # what a checkpoint in this epoch records
            order = _shuffled(train, generator, device)  # fresh shuffle every epoch
            first = state.steps_into_epoch if epoch == state.epochs_done + 1 else 0
            progress.start_epoch(epoch, recipe.epochs, steps)

            def on_step(done: int) -> bool:
                progress.step(done)
                return stop.requested

            skipped_before = engine.skipped
            loss_sum, done = engine.run_epoch(order, on_step, first)
            if first:
                loss_sum = loss_sum + state.epoch_loss_sum  # the steps run before the resume
            timer.stop()
            for note in engine.notes:
                progress.note(note)
            engine.notes.clear()
            if engine.skipped > skipped_before:
                progress.note(f"netfit: epoch {epoch}: skipped {engine.skipped - skipped_before} steps with a "
                              "NaN or infinite loss or gradient")

            if done < steps:  # a signal arrived mid-epoch: checkpoint this exact position and stop
                read_back((epoch - 1) * steps + done - 1)
                position = replace(state, epochs_done=epoch - 1, steps_into_epoch=done,
                                   global_step=(epoch - 1) * steps + done, epoch_loss_sum=float(loss_sum),
                                   history=list(history.epochs))  # the sync above makes float() free
                raise _interrupted(stop, save(position, shuffle_state), epoch, done, steps, checkpoints)

            val_figures = evaluate_split(model, loss_fn, val, task) if val is not None else None
            pending.append(_Pending(epoch, loss_sum, val_figures, float(rates[min(epoch * steps, len(rates)) - 1]),
                                    timer))
            last = epoch == recipe.epochs
            # A checkpoint records the history, so every epoch it will hold must be read back first.
            if epoch % recipe.print_every == 0 or last or track_best or on_epoch_end is not None \
                    or (checkpoints is not None and (checkpoints.due(epoch) or stop.requested)):
                read_back(epoch * steps - 1)
            else:
                progress.end_epoch(None, history.metric_name, show=False)

            if track_best:  # read back this epoch, so the model holds this epoch's weights
                score = _score(history.epochs[-1], watched)
                if score > state.best_score + min_delta:
                    state.best_score, state.waited, state.best_epoch = score, 0, epoch
                    history.best_epoch = epoch
                    if watch is not None:
                        best_state = copy.deepcopy(model.state_dict())
                    if checkpoints is not None:
                        checkpoints.save_best(model, epoch, watched, score)
                else:
                    state.waited += 1
            state = replace(state, epochs_done=epoch, steps_into_epoch=0, global_step=epoch * steps,
                            epoch_loss_sum=0.0, history=list(history.epochs))
            if watch is not None and val is not None and state.waited >= watch.patience:
                history.stopped_early = state.stopped_early = True
                progress.note(f"early stopping after epoch {epoch}: {watch.metric} has not improved for "
                              f"{watch.patience} epochs; restoring epoch {history.best_epoch}")
            if checkpoints is not None and (checkpoints.due(epoch) or last or state.stopped_early or stop.requested):
                path = save(state, generator.get_state())
                if stop.requested and not (last or state.stopped_early):
                    raise _interrupted(stop, path, epoch + 1, 0, steps, checkpoints)
            if state.stopped_early:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    history.engine = engine.name
    return history


def _shuffled(train: Split, generator: torch.Generator, device: torch.device):
    """The epoch's order: a permutation of the rows, or the chunk and window draws of streamed rows."""
    if isinstance(train.X, StreamedRows):
        return train.X.epoch(generator)
    return torch.randperm(len(train), generator=generator, device=device)


def _read_back(pending: list[_Pending], rows: int, first_bad_step: torch.Tensor,
               weights_finite: torch.Tensor) -> tuple[list[EpochRecord], int, bool]:
    """Turn pending device figures into records with one host sync for all of them.

    Also returns the first step with a non-finite loss (-1: none) and whether the weights are finite.
    """
    tensors = [first_bad_step, weights_finite] + [p.loss_sum for p in pending] + [
        t for p in pending if p.val is not None for t in p.val]
    values = torch.stack([t.float().reshape(()) for t in tensors]).tolist()  # the sync
    first_bad, finite_weights, values = int(values[0]), bool(values[1]), values[2:]
    losses, vals = values[:len(pending)], iter(values[len(pending):])
    records = []
    for p, loss_sum in zip(pending, losses):
        val_loss = val_metric = None
        if p.val is not None:
            val_loss, val_metric = next(vals), next(vals)
        records.append(EpochRecord(p.epoch, loss_sum / rows, val_loss, val_metric, p.lr, p.timer.seconds()))
    return records, first_bad, finite_weights


def _nonfinite_error(step: int, steps: int, recipe: TrainSpec, checkpoints) -> NetfitError:
    epoch, in_epoch = step // steps + 1, step % steps + 1
    latest = checkpoints.latest if checkpoints is not None else None
    if latest is not None:
        kept = (f"the last good checkpoint, {latest}, is kept: resume from it with a lower rate, "
                f"`netfit train --resume {checkpoints.run_dir} --set train.lr=...`")
    else:
        kept = "no checkpoint had been written yet"
    return NetfitError(f"training stopped: the loss or gradients became NaN or infinite at epoch {epoch}, step "
                       f"{in_epoch} of {steps}; likely causes: a learning rate too high (train.lr = {recipe.lr:g}), "
                       f"inputs not scaled (data.scaling), or extreme or bad rows in the data; {kept}; "
                       'train.on_nonfinite = "skip_step" skips such steps instead')


def _interrupted(stop, checkpoint: Path, epoch: int, done: int, steps: int, checkpoints) -> TrainingInterrupted:
    where = f"epoch {epoch}, step {done} of {steps}" if done else f"the end of epoch {epoch - 1}"
    return TrainingInterrupted(f"stopped by {stop.name} at {where}; checkpoint written to {checkpoint}; "
                               f"resume with: netfit train --resume {checkpoints.run_dir}",
                               EXIT_CODES[stop.signum], str(checkpoint))


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
    # Correct predictions, or for regression the squared error of each target column.
    hits = torch.zeros(split.y.shape[1] if task == "regression" else (), device=device)
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
            hits += ((logits - yb) ** 2).sum(dim=0)  # squared error per target, turned into R^2 below
    model.train(was_training)
    if task == "regression":
        # R^2 per target column, averaged: scikit-learn's r2_score (uniform average), which a
        # column's standardization does not change; a constant column scores 1 if predicted exactly.
        total = ((split.y - split.y.mean(dim=0)) ** 2).sum(dim=0)
        per_target = torch.where(total > 0, 1.0 - hits / total.clamp_min(torch.finfo(total.dtype).tiny),
                                 (hits == 0).to(total.dtype))
        metric = per_target.mean()
    else:
        metric = hits / n
    return loss_sum / n, metric
