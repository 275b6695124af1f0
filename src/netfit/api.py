"""The Python API: ``fit``, ``load`` and ``build_model``. The CLI is a thin face over these."""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .augment import image_augment, mirror_caution
from .checkpoint import Checkpoint, Checkpointer, FollowerCheckpoints, data_hash, list_checkpoints, verify_checkpoints
from .distributed import Ranks, joined
from .engines import engine_name
from .errors import NetfitError
from .loggers import check_loggers, loggers_for
from .model import build_network, count_parameters
from .probe import has_batchnorm
from .optim import build_optimizer
from .prepare import resolve_widths
from .splits import PreparedData
from .progress import Progress, ProgressTarget
from .report import write_report
from .rundir import create_run_dir, enclosing_run, finish_run, is_finished, read_run, run_lock
from .spec import Spec, spec_from_dict, with_absolute_paths
from .storage import remove_tree
from .streaming import StreamedRows
from .callbacks import Callback, EpochFunction, Training
from .history import EpochRecord, History
from .step import steps_per_epoch
from .train import evaluate_split, fit_network
from .loading import custom_module, load
from .start import as_spec, precision_label, resolve_device, resolve_precision, start_training
from .trained import TrainedModel

__all__ = ["Run", "fit", "resume", "load", "build_model", "as_spec", "resolve_device", "resolve_precision"]

@dataclass
class Run:
    """The result of :func:`fit`: where it was saved, its metrics, its history and the model."""

    run_dir: Path | None
    spec: Spec
    metrics: dict[str, float]
    history: History
    model: TrainedModel

    def predict(self, X: Any) -> np.ndarray:
        """Shortcut for ``run.model.predict(X)``."""
        return self.model.predict(X)


@contextmanager
def _cpu_threads(device: torch.device, processes: int = 1):
    """One intra-op thread per core this process may use, for the run only (restored after).

    ``processes`` on one machine (torchrun's ranks) share its cores.
    """
    before = torch.get_num_threads()
    if device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // processes))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_model(spec: Spec | dict[str, Any] | str | Path, input_size: int | None = None,
                output_size: int | None = None) -> nn.Module:
    """The spec's network as a plain ``nn.Module`` (untrained, returning logits).

    ``"auto"`` widths are taken from ``input_size``/``output_size`` when given, else from the
    spec's data (which is then loaded).
    """
    spec = as_spec(spec)
    layout = None
    if input_size is None or output_size is None:
        if spec.model.module is None:
            auto_in, auto_out, layout = resolve_widths(spec)
            input_size = input_size or auto_in
            output_size = output_size or auto_out
    return build_network(spec.model, input_size or 0, output_size or 0, layout=layout)


def fit(spec: Spec | dict[str, Any] | str | Path, X: Any = None, y: Any = None, *,
        out: str | Path | None = "runs", progress: ProgressTarget = sys.stdout,
        on_epoch_end: Callable[[EpochRecord, nn.Module], None] | None = None,
        callbacks: Sequence[Callback] = ()) -> Run:
    """Train the spec's network and, unless ``out`` is None, save a new run directory under ``out``.

    ``X`` and ``y`` (NumPy arrays or tensors) replace the spec's data source when given.
    ``progress`` receives the per-epoch lines and, on a terminal, a live bar: a stream, "logging"
    (INFO records of the ``netfit`` logger) or None for silence. ``on_epoch_end(record, network)``
    is called after every epoch, outside its timed part (benchmarks use it to evaluate);
    ``callbacks`` (:class:`netfit.callbacks.Callback`) see the run start, every epoch and the end.
    With ``out``, the run directory is created when training starts and receives checkpoints
    (``train.checkpoint_every``); SIGINT or SIGTERM then writes one and raises
    :class:`~netfit.errors.TrainingInterrupted`, and :func:`resume` continues the run.
    Returns a :class:`Run` with the final metrics and a :class:`TrainedModel`.
    """
    # Relative data paths are resolved now: the saved run names the same files from any folder.
    spec = with_absolute_paths(as_spec(spec))
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (run := enclosing_run(out_dir)) is not None:
        raise NetfitError(f"--out {out_dir} is inside run folder {str(run)!r}; a run never holds another: "
                          "choose a folder of runs outside it (the default is runs/)")
    hooks = _hooks(on_epoch_end, callbacks, progress)
    with joined() as ranks:  # under torchrun: one run, this process one of its ranks
        return _train(spec, X, y, out_dir, None, None, progress, hooks, ranks=ranks)


def resume(run_dir: str | Path, X: Any = None, y: Any = None, *, epochs: int | None = None,
           lr: float | None = None, spec: Spec | dict[str, Any] | str | Path | None = None,
           data_dir: str | Path | None = None, progress: ProgressTarget = sys.stdout,
           on_epoch_end: Callable[[EpochRecord, nn.Module], None] | None = None,
           callbacks: Sequence[Callback] = (), module: type[nn.Module] | None = None,
           trust_module: bool = False) -> Run:
    """Continue a run from its latest checkpoint, exactly where it stopped.

    Every file of the run is verified first. The run's own spec is used: ``epochs`` and ``lr``
    are the only things that may change (``data_dir`` only says where the same data now lives).
    ``spec``, when given, must agree with the run's; ``X`` and ``y`` must be the rows the run
    was trained on (their hash is checked). On the CPU in fp32 the result is bit-identical to a
    run that was never interrupted.

    A run folder never makes netfit import code on its own: a run trained with a custom
    ``model.module`` resumes with that class passed as ``module``, with ``spec`` (your own spec,
    which names the module) given, or with ``trust_module=True`` (import what the run names).
    """
    run_dir = Path(run_dir)
    # Under torchrun rank 0 checks and reads the run (holding its lock) and hands the checkpoint to every rank.
    with joined() as ranks, ExitStack() as lock:
        wanted, checkpoint = ranks.from_leader(lambda: _resume_point(run_dir, lock, epochs, lr, spec, data_dir))
        hooks = _hooks(on_epoch_end, callbacks, progress)
        # A spec the user gave names the module too (it was checked equal to the run's above).
        module = custom_module(wanted, module, trust_module or spec is not None, run_dir, "resuming")
        return _train(wanted, X, y, None, run_dir, checkpoint, progress, hooks, module, ranks)


def _resume_point(run_dir: Path, lock: ExitStack, epochs: int | None, lr: float | None,
                  spec: Spec | dict[str, Any] | str | Path | None,
                  data_dir: str | Path | None) -> tuple[Spec, Checkpoint]:
    """The spec to train on and the checkpoint to resume from, after every check; takes the run's lock."""
    if not run_dir.is_dir():
        raise NetfitError(f"run {str(run_dir)!r} does not exist or is not a folder; pass a run folder to resume")
    if enclosing_run(run_dir) != run_dir.absolute():
        raise NetfitError(f"{str(run_dir)!r} is not a netfit run folder (it has no run-id.json, run.json or "
                          "checkpoints/); pass the folder `netfit train` created")
    # Locked before anything is read: another process may be writing the checkpoints read here.
    lock.enter_context(run_lock(run_dir))
    finished = is_finished(run_dir)
    # Every file is verified before any is used; a finished run's final files are checked too.
    verified = read_run(run_dir).checkpoints if finished else verify_checkpoints(run_dir)
    resumable = [c for c in verified if c.body["kind"] == "resume"]
    if not resumable:
        raise NetfitError(f"run {str(run_dir)!r} has no checkpoint to resume from; train it again")
    checkpoint = resumable[-1]
    run_spec = checkpoint.spec
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = epochs
    if lr is not None:
        changes["lr"] = lr
    raw = run_spec.to_dict()
    raw["train"].update(changes)
    if data_dir is not None:
        raw["data"]["data_dir"] = str(data_dir)
    wanted = spec_from_dict(raw, source="the run's spec with the changes asked for")
    if spec is not None:
        differences = _differences(_comparable(with_absolute_paths(as_spec(spec))), _comparable(wanted))
        if differences:
            raise NetfitError(f"the spec given disagrees with run {str(run_dir)!r} at {', '.join(differences[:5])}; "
                              "a resume keeps the run's spec (only train.epochs and train.lr may change, with "
                              "--set): drop the spec argument, or start a new run")
    state = checkpoint.training_state()
    # A run whose training ended but whose final files were never written (killed in between) is
    # finished by its resume, without training; a finished one needs more epochs to go on.
    if state.stopped_early and finished:
        raise NetfitError(f"run {str(run_dir)!r} stopped early at epoch {state.epochs_done}; there is nothing "
                          "to resume (start a new run to train it differently)")
    done_training = state.stopped_early or state.epochs_done == wanted.train.epochs
    if state.epochs_done > wanted.train.epochs or (finished and done_training):
        raise NetfitError(f"run {str(run_dir)!r} has already trained {state.epochs_done} epochs of "
                          f"{run_spec.train.epochs}; pass --set train.epochs=N with N > {state.epochs_done} "
                          "to train it further")
    return wanted, checkpoint


def _hooks(on_epoch_end: Callable[[EpochRecord, nn.Module], None] | None,
           callbacks: Sequence[Callback], progress: ProgressTarget = None) -> list[Callback]:
    if progress is not None and progress != "logging" and not callable(getattr(progress, "write", None)):
        raise TypeError(f"progress must be a stream such as sys.stdout, \"logging\" or None, not {progress!r}")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks must be netfit.callbacks.Callback instances, not {type(callback).__name__}")
    return [*([EpochFunction(on_epoch_end)] if on_epoch_end is not None else []), *callbacks]


def _train(spec: Spec, X: Any, y: Any, out_dir: Path | None, run_dir: Path | None, checkpoint: Checkpoint | None,
           progress: ProgressTarget, callbacks: list[Callback], module: type[nn.Module] | None = None,
           ranks: Ranks = Ranks()) -> Run:
    """Train and save one run; under torchrun every rank trains, and rank 0 alone prints and writes files."""
    check_loggers(spec)  # a missing package is named before any data is read
    start = start_training(spec, X, y, module)
    device, data, network, loss_fn, autocast_dtype = (start.device, start.data, start.network, start.loss_fn,
                                                      start.autocast_dtype)
    prep = data.preparation
    reporter = Progress(progress if ranks.leader else None)
    # Hashed for the checkpoints, and under torchrun to check that every rank holds the same rows.
    keeps_files = out_dir is not None or run_dir is not None or ranks.many
    streamed = data.train.X if isinstance(data.train.X, StreamedRows) else None
    if streamed is not None:
        reporter.note(streamed.note)
    if streamed is not None:  # hashed in the pass that fitted the scaler: the rows are not read again
        data_sha256 = streamed.data_sha256 if keeps_files else ""
    else:
        data_sha256 = data_hash(data.train.X, data.train.y) if keeps_files else ""
    if checkpoint is not None and checkpoint.body["data_sha256"] != data_sha256:
        raise NetfitError(f"the training rows differ from those run {str(run_dir)!r} was trained on; a resume "
                          "needs the same data (same files, same data.* settings)")
    if ranks.many:
        _check_ranks_agree(ranks, spec, data, network, data_sha256)

    engine = engine_name(spec.train.engine, device, autocast_dtype)
    optimizer = build_optimizer(network.parameters(), spec.train.optimizer, spec.train.lr,
                                spec.train.weight_decay, capturable=engine == "graph")
    reporter.note(f"netfit: {prep.task} ({prep.task_reason}) on {prep.dataset}: {len(data.train)} train, "
                  f"{len(data.val) if data.val else 0} val, {len(data.test) if data.test else 0} test rows; "
                  f"{count_parameters(network):,} parameters on {device} ({engine}, "
                  f"{precision_label(spec.train.precision, autocast_dtype, device)})")
    if prep.encoder is not None:
        reporter.note(f"netfit: columns: {prep.encoder.describe()}")
    if checkpoint is not None:
        reporter.note(f"netfit: resuming from {checkpoint.path}")
    if ranks.job:
        reporter.note(f"netfit: {ranks.size} processes ({ranks.backend(device)}), each stepping on its part of "
                      f"every batch of {min(spec.train.batch_size, len(data.train))} rows; rank 0 writes the run")

    created = run_dir is None and out_dir is not None
    if created:  # by rank 0; the other ranks learn its name (for their messages)
        run_dir = ranks.from_leader(
            lambda: create_run_dir(out_dir, f"{_slug(prep.dataset)}-{time.strftime('%Y%m%d-%H%M%S')}"))
    checkpoints = None
    if run_dir is not None:
        full, rest = steps_per_epoch(len(data.train), spec.train.batch_size, ranks.size)
        checkpoints = ranks.from_leader(lambda: Checkpointer(run_dir, spec, data_sha256, full + (rest > 0),
                                                             resuming=checkpoint), share=False)
        checkpoints = checkpoints or FollowerCheckpoints(run_dir, spec)
    # A resume took the lock before reading the run.
    with run_lock(run_dir) if created and ranks.leader else nullcontext():
        if ranks.leader and checkpoints is not None:
            checkpoints.clear_leftovers()
        try:
            with _cpu_threads(device, ranks.local_size):
                augment = image_augment(spec.data.augment, data.image_shape, len(data.train), spec.train.seed,
                                        device)
                if augment is not None:
                    reporter.note(f"netfit: {augment.describe()}")
                    caution = mirror_caution(spec.data.augment, spec.data.dataset)
                    if caution:
                        reporter.note(caution)
                training = Training(network, loss_fn, optimizer, data.train, data.val, spec, prep.task, device,
                                    autocast_dtype, engine, run_dir, prep.classes, ranks=ranks, augment=augment)
                logs = loggers_for(spec, run_dir) if ranks.leader else []
                history = fit_network(training, [*callbacks, *logs], progress=reporter, checkpoints=checkpoints,
                                      resume=checkpoint)
                model = TrainedModel(network, spec, prep)
                if not ranks.leader:  # rank 0 evaluates, saves and reports the run
                    return Run(None, spec, {}, history, model)
                metrics = _final_metrics(model, loss_fn, data, history, device)
        except BaseException:
            if created and ranks.leader and not list_checkpoints(run_dir) \
                    and not (run_dir / "checkpoints" / "best").is_dir():
                remove_tree(run_dir)  # nothing worth keeping was written: leave no empty run behind
            raise
        model.metrics = metrics
        if run_dir is not None:
            rows = {"train": len(data.train), "validation": len(data.val) if data.val else 0,
                    "test": len(data.test) if data.test else 0}
            processes = {"world_size": ranks.size, "backend": ranks.backend(device)} if ranks.job else None
            finish_run(run_dir, network, spec, prep, history, metrics, str(device), rows, processes)
            model.run_dir = run_dir
            _write_report(run_dir, model, data, reporter)
    return Run(run_dir, spec, metrics, history, model)


def _check_ranks_agree(ranks: Ranks, spec: Spec, data: PreparedData, network: nn.Module, data_sha256: str) -> None:
    """What several ranks need before their first step: the same rows, and enough of them in each batch."""
    ranks.check_same(data_sha256, "the training rows")
    ranks.check_batch(spec.train.batch_size, len(data.train), has_batchnorm(network))
    if spec.train.on_nonfinite == "skip_step":
        raise NetfitError("train.on_nonfinite = \"skip_step\" decides on each rank's own loss, which several "
                          "processes could decide differently; use \"stop\" (the default) under torchrun")


def _write_report(run_dir: Path, model: TrainedModel, data: PreparedData, reporter: Progress) -> None:
    # The run is whole by now: a page that cannot be written costs the page, not the run.
    try:
        reporter.note(f"netfit: report: {write_report(run_dir, model, data.test)}")
    except NetfitError as err:
        reporter.note(f"netfit: warning: the run is saved, but its report was not written ({err}); "
                      f"try again with `netfit report {run_dir}`")


def _comparable(spec: Spec) -> dict[str, Any]:
    raw = spec.to_dict()
    raw["data"].pop("data_dir", None)  # where the data lives, not what it is
    return raw


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two spec dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return found
    return [] if a == b else [f"{prefix.rstrip('.')} ({a!r} vs the run's {b!r})"]


def _final_metrics(model: TrainedModel, loss_fn: nn.Module, data: PreparedData, history: History,
                   device: torch.device) -> dict[str, float]:
    # With early stopping the network holds the best epoch's weights: every figure is that epoch's.
    restored = model.spec.train.early_stopping is not None and history.best_epoch is not None
    kept = history.epochs[history.best_epoch - 1] if restored else history.epochs[-1]
    metrics: dict[str, float] = {"train_loss": kept.train_loss, "epochs": len(history.epochs)}
    for part, split in (("val", data.val), ("test", data.test)):
        if split is None:
            continue
        metrics[f"{part}_loss"] = float(evaluate_split(model.network, loss_fn, split.to(device), model.task)[0])
        report = model.report(split.X, split.y)
        for key in ("accuracy", "macro_f1", "mae", "rmse", "r2"):
            if key in report:
                metrics[f"{part}_{key}"] = report[key]
    return metrics


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return keep.strip("-") or "run"
