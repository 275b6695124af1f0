"""What a run prints while it trains: the tutorials' line per epoch, and a bar on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Prints ``Epoch 3/10  loss 0.2412  val_loss 0.1301  val_acc 0.9612`` lines.

    When ``stream`` is a terminal a bar for the current epoch is redrawn in place (at most ten
    times a second); otherwise only the epoch lines are written, so logs stay readable.
    """

    _SHORT = {"val_accuracy": "val_acc", "val_r2": "val_r2"}

    def __init__(self, stream: TextIO | None = sys.stdout, bar: bool | None = None) -> None:
        self.stream = stream
        self.bar = bool(stream is not None and (bar if bar is not None else stream.isatty()))
        self._steps = 0
        self._label = ""
        self._last_draw = 0.0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._steps, self._label, self._last_draw = steps, f"Epoch {epoch}/{epochs}", 0.0

    def step(self, done: int) -> None:
        if not self.bar:
            return
        now = time.monotonic()
        if done != self._steps and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 30
        filled = width * done // max(self._steps, 1)
        self.stream.write(f"\r{self._label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self._steps}")
        self.stream.flush()

    def end_epoch(self, record, metric_name: str, show: bool) -> None:
        if self.stream is None:
            return
        if self.bar:
            self.stream.write("\r\033[K")  # clear the bar line
        if show and record is not None:
            line = f"{self._label}  loss {record.train_loss:.4f}"
            if record.val_loss is not None:
                line += f"  val_loss {record.val_loss:.4f}  {self._SHORT[metric_name]} {record.val_metric:.4f}"
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        if self.stream is not None:
            self.stream.write(message + "\n")
            self.stream.flush()
