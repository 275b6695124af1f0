"""netfit's version, and the versions a run or checkpoint records of what made it."""

from __future__ import annotations

import platform

__all__ = ["__version__", "versions"]

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """netfit, torch, NumPy and Python versions, as run.json and every checkpoint record them."""
    import numpy as np
    import torch

    return {"netfit": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
