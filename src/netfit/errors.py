"""The one exception type for mistakes a user can fix."""

from __future__ import annotations

__all__ = ["NetfitError"]


class NetfitError(Exception):
    """A problem with the user's input: a spec, a data file, a run directory, a path.

    The message is one line that names the problem and what to do about it. The CLI
    prints it and exits with code 2; internal bugs raise other exceptions and exit 1.
    """
