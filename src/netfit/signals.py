"""SIGINT and SIGTERM during training: finish the step, write a checkpoint, then stop.

The handler only records the signal; the training loop looks at the record after every step
(or every replayed CUDA graph) and stops cleanly there. A second signal does not wait: it
raises ``KeyboardInterrupt`` at once, and the atomic writes keep the last checkpoint intact.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["StopRequest", "stop_on_signals", "EXIT_CODES"]

# The shell's convention: 128 + the signal's number.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequest:
    """Set by a signal handler; read by the training loop between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def stop_on_signals(enabled: bool = True) -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM for the duration (main thread only: Python allows no other)."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.signum is not None:
            raise KeyboardInterrupt  # asked twice: stop now
        request.signum = signum

    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
