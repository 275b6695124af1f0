"""The epoch loop, top to bottom, around the step in ``step.py``.

This is the loop every PyTorch tutorial writes by hand (shuffle, forward, loss, backward,
step), with the details that are easy to get wrong done once: a fresh permutation every epoch,
``train()`` for the steps and ``eval()`` for validation, losses accumulated on the device and
read back once per print interval. Everything else a run does at an epoch's end (the best
epoch, early stopping, checkpoints, progress, logs) attaches through ``callbacks.py``. How the
steps of an epoch are executed (eagerly, compiled, or replayed as a CUDA graph) is the engine's
business (``engines.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

from .callbacks import BestEpoch, Callback, EarlyStopping, Training, watched_metric
from .distributed import AgreedStop, Ranks
from .engines import StepPlan, choose_engine
from .errors import NetfitError, TrainingInterrupted
from .history import EpochRecord, History, TrainingState
from .splits import Split
from .progress import Progress
from .schedules import lr_table
from .signals import EXIT_CODES, stop_on_signals
from .spec import TrainSpec
from .step import steps_per_epoch
from .streaming import StreamedRows

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, Checkpointer

__all__ = ["fit_network", "evaluate_split"]


@dataclass
class _Pending:
    """An epoch's figures still on the device, read back at the next print interval."""

    epoch: int
    loss_sum: torch.Tensor
    val: tuple[torch.Tensor, torch.Tensor] | None
    lr: float
    timer: "_EpochTimer"


def fit_network(training: Training, callbacks: Sequence[Callback] = (), *, progress: Progress | None = None,
                checkpoints: "Checkpointer | None" = None, resume: "Checkpoint | None" = None) -> History:
    """Train ``training.model`` in place for ``train.epochs`` epochs, or until a callback ends the run.

    ``callbacks`` see the run start, each epoch start and end, and the run end (``callbacks.py``).
    With ``checkpoints``, a resumable checkpoint is written every ``train.checkpoint_every``
    epochs, at the end and on SIGINT/SIGTERM; ``resume`` continues from such a checkpoint
    exactly where it was written.
    """
    t, recipe = training, training.spec.train
    progress = progress or Progress(None)
    t.say = progress.note
    hooks = [*_built_in(t, checkpoints), progress, *callbacks, *([checkpoints] if checkpoints else [])]
    loop = _Loop(t, checkpoints, resume, syncs_every_epoch=any(h.syncs_every_epoch for h in hooks))
    for hook in hooks:
        hook.on_run_start(t)
    with stop_on_signals(enabled=checkpoints is not None) as signals, progress.bar_closed():
        stop = AgreedStop(signals, t.ranks, loop.steps) if t.ranks.many else signals
        last_epoch = t.state.epochs_done if t.state.stopped_early else recipe.epochs  # a resume may only finish
        for epoch in range(t.state.epochs_done + 1, last_epoch + 1):
            for hook in hooks:
                hook.on_epoch_start(t, epoch)
            t.model.train()  # Dropout on, BatchNorm uses batch statistics
            shuffle_state = t.generator.get_state()  # what a checkpoint in this epoch records
            order = _shuffled(t.train, t.generator, t.device)  # fresh shuffle every epoch
            first = t.state.steps_into_epoch if epoch == t.state.epochs_done + 1 else 0
            timer = _EpochTimer(t.device)

            def on_step(done: int) -> bool:
                progress.advance(done)
                return stop.poll(done) if t.ranks.many else stop.requested  # several ranks: an agreed step

            loss_sum, done = loop.run_epoch(epoch, order, on_step, first)
            timer.stop()
            if done < loop.steps:  # a signal arrived mid-epoch: checkpoint this exact position and stop
                loop.read_back(hooks, loop.global_step(epoch - 1, done) - 1)
                # The sync above makes float() free; with several ranks the checkpoint holds all their steps' losses.
                position = replace(t.state, steps_into_epoch=done, global_step=loop.global_step(epoch - 1, done),
                                   epoch_loss_sum=float(t.ranks.sum(loss_sum)))
                raise _interrupted(stop, loop.checkpoint(position, shuffle_state), epoch, done, loop.steps,
                                   checkpoints)

            val = evaluate_split(t.model, t.loss_fn, t.val, t.task, ranks=t.ranks) if t.val is not None else None
            loop.pending.append(_Pending(epoch, loss_sum, val, loop.lr_at_end_of(epoch), timer))
            t.state = replace(t.state, epochs_done=epoch, steps_into_epoch=0, global_step=epoch * loop.steps,
                              epoch_loss_sum=0.0)
            # A stop asked outside a read-back (from on_epoch_start, say) ends the run here: read first.
            if loop.reads_back_after(epoch, stop.requested) or t.stop_reason is not None:
                loop.read_back(hooks, epoch * loop.steps - 1)
            if t.stop_reason is not None:
                t.say(t.stop_reason)
                break
            if stop.requested and epoch < recipe.epochs:
                # The checkpointer has just saved this epoch's end when it was due; else save it now.
                path = checkpoints.latest if checkpoints.due(epoch) else loop.checkpoint(t.state, t.generator.get_state())
                raise _interrupted(stop, path, epoch + 1, 0, loop.steps, checkpoints)
    for hook in hooks:
        hook.on_run_end(t)
    return t.history


def _built_in(t: Training, checkpoints: "Checkpointer | None") -> list[Callback]:
    """Best-epoch tracking and early stopping, when the spec and the data call for them."""
    watch = t.spec.train.early_stopping
    if t.val is None or (watch is None and checkpoints is None):
        return []
    best = BestEpoch(watched_metric(t.spec, t.task), watch.min_delta if watch else 0.0, restore=watch is not None)
    return [best, EarlyStopping(watch.metric, watch.patience)] if watch is not None else [best]


class _Loop:
    """The run's engine, learning-rate table and pending figures: what the epoch loop keeps between epochs."""

    def __init__(self, t: Training, checkpoints: "Checkpointer | None", resume: "Checkpoint | None",
                 syncs_every_epoch: bool) -> None:
        recipe = t.spec.train
        # Read-backs are collectives with several ranks: every rank must read back after the same epochs.
        self.t, self.checkpoints, self.syncs_every_epoch = t, checkpoints, t.ranks.any(syncs_every_epoch)
        # The whole training set lives on the device (on every rank's): no per-batch copies.
        t.train = t.train.to(t.device)
        t.val = t.val.to(t.device) if t.val is not None else None
        self.full, self.rest = steps_per_epoch(len(t.train), recipe.batch_size, t.ranks.size)
        self.steps = self.full + (self.rest > 0)
        self.rates = lr_table(recipe.schedule, recipe.lr, self.steps, recipe.epochs)
        t.grad_scaler = torch.amp.GradScaler(t.device.type) if t.precision == torch.float16 else None
        # The permutation is drawn on the training device from the run's seed: no host work per epoch.
        t.generator = torch.Generator(device=t.device).manual_seed(recipe.seed)
        self.pending: list[_Pending] = []
        if resume is not None:
            t.state = resume.training_state()
            t.best_weights = resume.best_weights() if recipe.early_stopping is not None else None
            resume.restore(t.model, t.optimizer, t.generator, t.grad_scaler)
        network, shares = t.ranks.wrap(t.model, t.device)  # several ranks: DDP; one: the model itself
        self.plan = StepPlan(network, t.loss_fn, t.optimizer, t.train, min(recipe.batch_size, len(t.train)),
                             self.full, self.rest, self.rates, recipe.clip_grad_norm, t.precision, t.grad_scaler,
                             first_step=t.state.global_step, skip_nonfinite=recipe.on_nonfinite == "skip_step",
                             shares=shares, augment=t.augment)
        self.engine, reason = choose_engine(t.engine, self.plan, t.device)
        t.engine = self.engine.name
        t.history = History(metric_name=t.metric_name, engine=self.engine.name, epochs=list(t.state.history),
                            best_epoch=t.state.best_epoch)
        if reason:
            t.say(reason)

    def checkpoint(self, position: TrainingState, shuffle_state: torch.Tensor) -> Path:
        """A resumable checkpoint of ``position`` (on a signal: the checkpointer saves the scheduled ones)."""
        t = self.t
        return self.checkpoints.save(position, t.model, t.optimizer, shuffle_state, t.grad_scaler, t.engine,
                                     t.best_weights)

    def global_step(self, epochs_done: int, steps: int) -> int:
        return epochs_done * self.steps + steps

    def lr_at_end_of(self, epoch: int) -> float:
        return float(self.rates[min(epoch * self.steps, len(self.rates)) - 1])

    def run_epoch(self, epoch: int, order, on_step: Callable[[int], bool], first: int) -> tuple[torch.Tensor, int]:
        skipped_before = self.engine.skipped
        if self.t.augment is not None:
            self.t.augment.begin_epoch(epoch)  # drawn from the seed and the epoch: a resume draws the same
        loss_sum, done = self.engine.run_epoch(order, on_step, first)
        if first and self.t.ranks.leader:  # the steps run before the resume (all ranks' losses: rank 0 adds them)
            loss_sum = loss_sum + self.t.state.epoch_loss_sum
        for note in self.engine.notes:
            self.t.say(note)
        self.engine.notes.clear()
        if self.engine.skipped > skipped_before:
            self.t.say(f"netfit: epoch {epoch}: skipped {self.engine.skipped - skipped_before} steps with a NaN or "
                       "infinite loss or gradient")
        return loss_sum, done

    def reads_back_after(self, epoch: int, stop_requested: bool) -> bool:
        """Whether this epoch's figures are read now (a host sync) or wait for the next print interval."""
        recipe = self.t.spec.train
        # A checkpoint records the history, so every epoch it will hold must be read back first.
        saving = self.checkpoints is not None and (self.checkpoints.due(epoch) or stop_requested)
        return epoch % recipe.print_every == 0 or epoch == recipe.epochs or self.syncs_every_epoch or saving

    def read_back(self, hooks: Sequence[Callback], last_step: int) -> None:
        """Read the pending epochs' figures (one host sync), check them, and hand each record to the hooks."""
        t = self.t
        weights_finite = torch.stack([torch.isfinite(p).all() for p in t.model.parameters()]).all()
        first_bad_step = self.engine.first_bad_step
        if t.ranks.many:  # every rank reads the same figures, so every rank decides the same
            first_bad_step, weights_finite = _over_ranks(t.ranks, self.pending, first_bad_step, weights_finite)
        records, first_bad, finite_weights = _read_back(self.pending, len(t.train), first_bad_step, weights_finite)
        if not self.plan.skip_nonfinite and (first_bad >= 0 or not finite_weights):
            # No bad loss yet, yet bad weights: the gradients of the last step run were not finite.
            at = first_bad if first_bad >= 0 else last_step
            raise _nonfinite_error(at, self.steps, t.spec.train, self.checkpoints)
        self.pending.clear()
        t.history.epochs.extend(records)
        t.state.history = list(t.history.epochs)
        for record in records:
            for hook in hooks:
                hook.on_epoch_end(t, record)
        if t.ranks.many and t.ranks.any(t.stop_reason is not None) and t.stop_reason is None:
            t.stop_reason = "stopping with the other ranks"  # their callbacks ended the run


def _shuffled(train: Split, generator: torch.Generator, device: torch.device):
    """The epoch's order: a permutation of the rows, or the chunk and window draws of streamed rows."""
    if isinstance(train.X, StreamedRows):
        return train.X.epoch(generator)
    return torch.randperm(len(train), generator=generator, device=device)


def _over_ranks(ranks: Ranks, pending: list[_Pending], first_bad_step: torch.Tensor,
                weights_finite: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the pending epochs' losses over the ranks (in place); the first bad step of any rank; finite on all."""
    if pending:
        sums = ranks.sum(torch.stack([p.loss_sum for p in pending]))
        for p, loss_sum in zip(pending, sums):
            p.loss_sum = loss_sum
    never = torch.iinfo(torch.long).max
    # One all-reduce (MAX) for both: the smallest step is the largest negated one.
    flags = torch.stack([-torch.where(first_bad_step >= 0, first_bad_step, never), (~weights_finite).long()])
    ranks.max(flags)
    first_bad = -flags[0]
    return torch.where(first_bad == never, -1, first_bad), flags[1] == 0


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
                   batch_size: int = 2048, ranks: Ranks | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and the task's metric (accuracy, or R^2) on one split, in eval mode, on the device.

    Both come back as 0-dim device tensors: the caller decides when to pay for reading them.
    Batches of 2048 rows keep the float32 copies of the inputs small next to the uint8 data.
    With several ``ranks``, each evaluates its part of the rows and the sums are added up
    before the division, so every rank gets the figures of the whole split.
    """
    was_training = model.training
    model.eval()  # Dropout off, BatchNorm uses running statistics
    device = split.X.device
    loss_sum = torch.zeros((), device=device)
    # Correct predictions, or for regression the squared error of each target column.
    hits = torch.zeros(split.y.shape[1] if task == "regression" else (), device=device)
    n = len(split)
    part = ranks.shard(n) if ranks is not None and ranks.many else slice(0, n)
    for start in range(part.start, part.stop, batch_size):
        rows = slice(start, min(start + batch_size, part.stop))
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
    if part.stop - part.start < n:
        sums = ranks.sum(torch.cat([loss_sum.reshape(1), hits.reshape(-1)]))
        loss_sum, hits = sums[0], sums[1:].reshape(hits.shape)
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
