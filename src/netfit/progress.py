"""What a run prints while it trains: the tutorials' line per epoch, and a live bar on a terminal.

The bar is tqdm's: per epoch, with steps done, rate, elapsed time and ETA, redrawn in place
only when the stream is a terminal. The epoch lines are the log: they go to the stream, above
the bar, or (``progress="logging"``) as INFO records of the ``netfit`` logger, so a program can
route them wherever its logging goes. ``None`` is silence.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Literal, TextIO, Union

from .callbacks import Callback, Training
from .history import EpochRecord
from .step import steps_per_epoch

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["Progress", "ProgressTarget", "bar", "LOGGER"]

LOGGER = logging.getLogger("netfit")

# Where a run's lines go: a stream, the ``netfit`` logger, or nowhere.
ProgressTarget = Union[TextIO, Literal["logging"], None]


def bar(total: int | None, stream: TextIO | None, **options) -> "tqdm | None":
    """A tqdm bar on ``stream`` when it is a terminal, else None (logs keep only whole lines)."""
    if stream is None or not _is_terminal(stream):
        return None
    from tqdm import tqdm  # imported when a bar is drawn: commands that draw none do not pay for it

    return tqdm(total=total, file=stream, dynamic_ncols=True, mininterval=0.1, **options)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


class Progress(Callback):
    """Prints ``Epoch 3/10  loss 0.2412  val_loss 0.1301  val_acc 0.9612  (1.2 s)`` lines, and a bar.

    A line is printed every ``train.print_every`` epochs and for the last one; the run's total
    time closes it. ``bar=False`` keeps the bar off even on a terminal.
    """

    _SHORT = {"val_accuracy": "val_acc", "val_r2": "val_r2"}

    def __init__(self, target: ProgressTarget = sys.stdout, bar: bool = True) -> None:
        self.target = target
        self.stream = target if target not in (None, "logging") else None
        self.draws = bar
        self._bar: "tqdm | None" = None
        self._started = 0.0

    def note(self, message: str) -> None:
        """One line for the person watching: above the bar, in the log, or nowhere."""
        if self.target == "logging":
            LOGGER.info(message.removeprefix("netfit: "))  # the logger's name already says it
        elif self._bar is not None:
            self._bar.write(message, file=self.stream)
        elif self.stream is not None:
            self.stream.write(message + "\n")
            self.stream.flush()

    def on_run_start(self, training: Training) -> None:
        self._started = time.perf_counter()

    def on_epoch_start(self, training: Training, epoch: int) -> None:
        if not self.draws:
            return
        steps = _steps(training)
        if self._bar is None:
            self._bar = bar(steps, self.stream, unit="step", leave=False)
            if self._bar is None:
                self.draws = False  # not a terminal: lines only
                return
        self._bar.reset(total=steps)
        self._bar.set_description(f"Epoch {epoch}/{training.epochs}", refresh=False)

    def advance(self, done: int) -> None:
        """Steps done in the epoch so far (the loop calls this after every step; tqdm redraws at most 10 times a second)."""
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def on_epoch_end(self, training: Training, record: EpochRecord) -> None:
        every = training.spec.train.print_every
        if record.epoch % every == 0 or record.epoch == training.epochs or training.stop_reason is not None:
            self.note(self.line(record, training.epochs, training.metric_name))

    @contextmanager
    def bar_closed(self) -> Iterator[None]:
        """Close the bar however the epochs end (an error or a signal too), so what follows starts clean."""
        try:
            yield
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def on_run_end(self, training: Training) -> None:
        epochs = len(training.history.epochs) if training.history is not None else 0
        self.note(f"netfit: trained {epochs} epoch{'s' if epochs != 1 else ''} in "
                  f"{_duration(time.perf_counter() - self._started)}")

    @classmethod
    def line(cls, record: EpochRecord, epochs: int, metric_name: str) -> str:
        """The tutorials' epoch line, with the epoch's time."""
        line = f"Epoch {record.epoch}/{epochs}  loss {record.train_loss:.4f}"
        if record.val_loss is not None:
            line += f"  val_loss {record.val_loss:.4f}  {cls._SHORT[metric_name]} {record.val_metric:.4f}"
        return line + f"  ({_duration(record.epoch_time_s)})"


def _steps(training: Training) -> int:
    full, rest = steps_per_epoch(len(training.train), training.spec.train.batch_size, training.ranks.size)
    return full + (rest > 0)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
