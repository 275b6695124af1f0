"""Logs a run keeps as it trains, chosen by ``train.log``: a live ``metrics.csv`` and TensorBoard.

Each log is a :class:`~netfit.callbacks.Callback` registered in :data:`LOGGERS` under the name a
spec writes (``spec.LOGS``). The training code calls :func:`check_loggers` before it loads any
data, so a missing package is named before minutes of work, and adds :func:`loggers_for` to the
loop's callbacks.

Neither log asks the loop for a host sync every epoch: records arrive in epoch order at each
read-back (print interval, checkpoint, end), possibly several at once, so a log writes figures
only, never anything computed from the model's current weights, except at the run's end.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .callbacks import Callback, Training
from .errors import NetfitError
from .history import EpochRecord, metrics_csv
from .registry import Registry
from .rundir import METRICS, is_finished
from .storage import write_atomic

if TYPE_CHECKING:
    from .splits import Split
    from .spec import Spec

__all__ = ["LOGGERS", "CsvLogger", "TensorBoardLogger", "check_loggers", "loggers_for", "TENSORBOARD_DIR"]

TENSORBOARD_DIR = "tensorboard"

LOGGERS: Registry[type["_Logger"]] = Registry("log")


def check_loggers(spec: "Spec") -> None:
    """Raise a one-line NetfitError if a log in ``spec.train.log`` cannot run here (a package is missing).

    Call it before any data is loaded or any step runs.
    """
    for name in spec.train.log:
        LOGGERS.get(name).check()


def loggers_for(spec: "Spec", run_dir: Path | None) -> list[Callback]:
    """One callback per log in ``spec.train.log``, writing into ``run_dir`` (None: a run that is not saved)."""
    return [LOGGERS.get(name)(run_dir) for name in spec.train.log]


class _Logger(Callback):
    """A log: built with the run folder, and able to say before the run whether it can work here."""

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.records: list[EpochRecord] = []

    @classmethod
    def check(cls) -> None:
        """Raise NetfitError naming the fix when this log cannot run in this environment."""

    def _keep(self, record: EpochRecord) -> None:
        # An epoch already held (logged before a resume went back to its checkpoint) is replaced.
        self.records = [r for r in self.records if r.epoch < record.epoch] + [record]


def _done(training: Training) -> list[EpochRecord]:
    """The epochs a resumed run had finished before this session; empty for a new run."""
    if training.history is not None and training.history.epochs:
        return list(training.history.epochs)
    return list(training.state.history)


@LOGGERS.register("csv")
class CsvLogger(_Logger):
    """``RUN/metrics.csv`` rewritten whenever epochs are read back, so it can be watched or plotted live.

    Each write replaces the whole file atomically: a reader sees the previous version or the new
    one, never half a row. The columns and number formats are those of the final file
    (:func:`netfit.history.metrics_csv` writes both). A finished run being trained further keeps
    its sealed ``metrics.csv`` untouched until the run finishes again: rewriting it earlier would
    make the run fail its hash check if this session were stopped.
    """

    def __init__(self, run_dir: Path | None) -> None:
        super().__init__(run_dir)
        self.live = False

    def on_run_start(self, training: Training) -> None:
        self.records = _done(training)
        self.live = self.run_dir is not None and not is_finished(self.run_dir)

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        self._keep(record)
        if self.live:
            write_atomic(self.run_dir / METRICS, metrics_csv(self.records, training.metric_name).encode("utf-8"))


@LOGGERS.register("tensorboard")
class TensorBoardLogger(_Logger):
    """TensorBoard event files in ``RUN/tensorboard/`` (``tensorboard --logdir runs``).

    Every epoch, at step = epoch: every figure of ``metrics.csv`` under its column's name
    (``train_loss``, ``val_loss``, ``val_accuracy`` or ``val_r2``, ``lr``, ``epoch_time_s``). At
    the end: the validation confusion matrix of the final model (classification and binary) as
    the image ``confusion_matrix/val``, and the hyperparameters with the final figures
    (``hparam/...``) for TensorBoard's HParams tab.
    """

    def __init__(self, run_dir: Path | None) -> None:
        super().__init__(run_dir)
        self.writer = None

    @classmethod
    def check(cls) -> None:
        _tensorboard()

    def on_run_start(self, training: Training) -> None:
        if self.run_dir is None:
            training.say('netfit: train.log "tensorboard" writes into the run folder, and this run is not saved '
                         "(out=None): nothing is logged to TensorBoard")
            return
        summary_writer, _ = _tensorboard()
        self.records = _done(training)
        # A resume restarts after its checkpoint's epoch, and the stopped session may have logged
        # later epochs before it ended. purge_step makes TensorBoard drop every event from that
        # step on, so each epoch shows once, with the figures of the session that kept it.
        purge_step = self.records[-1].epoch + 1 if self.records else None
        self.writer = summary_writer(log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        if self.writer is None:
            return
        self._keep(record)
        for tag, value in _scalars(record, training.metric_name).items():
            self.writer.add_scalar(tag, value, record.epoch)
        # Records come at read-backs, not every step: flushing each time lets a watcher see them now.
        self.writer.flush()

    def on_run_end(self, training: Training) -> None:
        if self.writer is None:
            return
        try:
            if self.records:
                kept = _kept(training, self.records)
                if training.task != "regression":
                    if training.val is None or len(training.val) == 0:
                        training.say("netfit: no validation rows, so TensorBoard gets no confusion matrix")
                    else:
                        self._confusion_image(training, kept.epoch)
                self._hparams(training, kept)
        finally:
            self.writer.close()
            self.writer = None

    def _confusion_image(self, training: Training, step: int) -> None:
        matrix = confusion_matrix(training.model, training.val, training.task, training.device)
        classes = training.classes or [str(i) for i in range(len(matrix))]
        self.writer.add_image("confusion_matrix/val", _render_confusion(matrix, classes, step), step,
                              dataformats="HWC")

    def _hparams(self, training: Training, kept: EpochRecord) -> None:
        _, hparams = _tensorboard()
        metrics = {f"hparam/{tag}": value for tag, value in _scalars(kept, training.metric_name).items()
                   if tag in ("train_loss", "val_loss", training.metric_name)}
        # Written into this run's own folder (torch's add_hparams would open a new one per call),
        # so the HParams tab lists the run once, beside its scalars.
        for summary in hparams(hyperparameters(training.spec, training.task), metrics):
            self.writer.file_writer.add_summary(summary, kept.epoch)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, kept.epoch)


def _tensorboard():
    """``SummaryWriter`` and torch's ``hparams`` summary, or the one-line error that says how to get them."""
    try:
        import matplotlib  # noqa: F401  (draws the confusion matrix)
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NetfitError(f'train.log has "tensorboard", but TensorBoard logging cannot load ({reason}): '
                          "pip install 'netfit[tensorboard]', or remove \"tensorboard\" from train.log") from None
    return SummaryWriter, hparams


def _scalars(record: EpochRecord, metric_name: str) -> dict[str, float]:
    """The record's figures by ``metrics.csv`` column name; validation figures only when there are any."""
    values: dict[str, float | None] = {"train_loss": record.train_loss, "val_loss": record.val_loss,
                                       metric_name: record.val_metric, "lr": record.lr,
                                       "epoch_time_s": record.epoch_time_s}
    return {tag: float(value) for tag, value in values.items() if value is not None}


def _kept(training: Training, records: list[EpochRecord]) -> EpochRecord:
    """The epoch whose weights the model ends with: the best one when early stopping restored it, else the last."""
    best = training.history.best_epoch if training.history is not None else training.state.best_epoch
    if training.spec.train.early_stopping is not None and best is not None:
        for record in records:
            if record.epoch == best:
                return record
    return records[-1]


def hyperparameters(spec: "Spec", task: str) -> dict[str, Any]:
    """The spec's choices as TensorBoard hyperparameters (numbers and text; options left unset are left out)."""
    train, model = spec.train, spec.model
    values: dict[str, Any] = {
        "task": task, "loss": train.loss.name if train.loss is not None else "default",
        "optimizer": train.optimizer.name, "lr": train.lr, "weight_decay": train.weight_decay,
        "batch_size": train.batch_size, "epochs": train.epochs, "schedule": train.schedule.name,
        "clip_grad_norm": train.clip_grad_norm, "seed": train.seed,
        "early_stopping": train.early_stopping.metric if train.early_stopping is not None else "off",
        "val_fraction": spec.data.val_fraction,
    }
    if model.module is not None:
        values["module"] = model.module
    else:
        values.update(hidden="-".join(map(str, model.hidden)) or "none", activation=model.activation,
                      dropout=model.dropout, batchnorm=model.batchnorm, init=model.init)
    return {key: value for key, value in values.items() if value is not None}


@torch.no_grad()
def confusion_matrix(model: torch.nn.Module, split: "Split", task: str, device: torch.device,
                     batch_size: int = 2048) -> np.ndarray:
    """Counts ``[true class, predicted class]`` of ``model`` on ``split``, in eval mode."""
    was_training = model.training
    model.eval()  # Dropout off, BatchNorm on its running statistics: the model as it predicts
    split = split.to(device)
    counts = None
    try:
        for start in range(0, len(split), batch_size):
            rows = slice(start, start + batch_size)
            logits = model(split.inputs(rows)).float()
            if task == "binary":  # one logit: class 1 where it is positive
                classes, predicted = 2, (logits > 0).long().reshape(-1)
            else:
                classes, predicted = logits.shape[1], logits.argmax(dim=1)
            true = split.y[rows].long().reshape(-1)
            pairs = torch.bincount(true * classes + predicted, minlength=classes * classes)
            counts = pairs if counts is None else counts + pairs
    finally:
        model.train(was_training)
    # The one read-back, after the last batch.
    return counts.reshape(classes, classes).cpu().numpy()


def _render_confusion(matrix: np.ndarray, classes: list[str], epoch: int) -> np.ndarray:
    """The matrix drawn by matplotlib's Agg canvas (no pyplot, no display) as an RGB array (H, W, 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(matrix)
    side = min(3 + 0.45 * k, 16)
    figure = Figure(figsize=(side, side), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    ticks = range(k) if k <= 50 else []  # past 50 classes the names overlap into a black bar
    axes.set_xticks(ticks, [classes[i] for i in ticks], rotation=90)
    axes.set_yticks(ticks, [classes[i] for i in ticks])
    axes.set(xlabel="predicted class", ylabel="true class",
             title=f"validation, epoch {epoch}: {int(np.trace(matrix))} of {int(matrix.sum())} right")
    if k <= 20:
        dark = matrix > matrix.max() / 2
        for i in range(k):
            for j in range(k):
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if dark[i, j] else "black")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
