"""The one exception type for mistakes a user can fix."""

from __future__ import annotations

__all__ = ["NetfitError", "TrainingInterrupted", "UnseenValuesWarning"]


class NetfitError(Exception):
    """A problem with the user's input: a spec, a data file, a run directory, a path.

    The message is one line that names the problem and what to do about it. The CLI
    prints it and exits with code 2; internal bugs raise other exceptions and exit 1.
    """


class UnseenValuesWarning(UserWarning):
    """Rows to predict hold categories never seen in training; they were given the "unseen" bucket.

    ``counts`` maps each such column to its number of rows, so a caller can add up several chunks.
    """

    def __init__(self, source: str, counts: dict[str, int]) -> None:
        listed = ", ".join(f"{name!r}: {count}" for name, count in counts.items())
        super().__init__(f"{source}: rows with values not seen in training ({listed}) get the \"unseen\" bucket "
                         "of their column")
        self.source, self.counts = source, dict(counts)


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint it can resume from.

    ``exit_code`` is the shell's 128 + signal number (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, exit_code: int, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.checkpoint = checkpoint
