"""Deterministic row splits for validation and test parts."""

from __future__ import annotations

import numpy as np

__all__ = ["split_rows"]


def split_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices ``0..n-1`` into a kept part and a held-out part of ``round(n * fraction)`` rows.

    The rows are drawn by a permutation from ``numpy.random.default_rng(seed)``, so the same
    ``n``, ``fraction`` and ``seed`` always give the same split on every machine. Both index
    arrays are sorted, keeping the rows of each part in their original order. A fraction of 0
    holds out nothing; a small ``n`` can leave either part empty, which the caller reports in
    terms of its own setting (``data.val_fraction``, ``data.test_fraction``).

    >>> keep, held = split_rows(10, 0.2, seed=0)
    >>> len(keep), len(held)
    (8, 2)
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    held_count = round(n * fraction)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held_count:]), np.sort(order[:held_count])
