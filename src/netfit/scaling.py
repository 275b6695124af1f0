"""Input and target scaling, fitted on training rows only and saved with the model.

Fitting on all rows would leak validation and test statistics into training; saving the fitted
statistics is what lets ``predict`` scale new rows exactly as the training rows were scaled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Scaler", "fit_scaler", "Moments"]


@dataclass(frozen=True)
class Scaler:
    """``(x - shift) / scale`` per feature; ``method`` names how shift and scale were found."""

    method: str
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scaled float32 copy of ``X``."""
        out = np.asarray(X, dtype=np.float32)
        if self.method == "none":
            return out.copy() if out is X else out
        return ((out - self.shift) / self.scale).astype(np.float32, copy=False)

    def apply(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Scale a batch where it lives, into float32 (``out`` if given). Images stay uint8 in
        memory until here, a quarter of the bytes of float32."""
        if self.method == "none":
            return x.float() if out is None else out.copy_(x)
        shift, scale = self._tensors(x.device)
        if out is None:
            # One float32 copy, scaled in place: a batch costs one temporary, not three.
            out = x.to(torch.float32, copy=True)
            return out.sub_(shift).div_(scale)
        return torch.sub(x, shift, out=out).div_(scale)

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        cache = self.__dict__.setdefault("_torch_cache", {})
        if key not in cache:
            cache[key] = (torch.as_tensor(self.shift, device=device), torch.as_tensor(self.scale, device=device))
        return cache[key]

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        """Undo ``transform`` (used to report regression predictions in the targets' own units)."""
        if self.method == "none":
            return np.asarray(Z, dtype=np.float32)
        return (np.asarray(Z, dtype=np.float32) * self.scale + self.shift).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "shift": None if self.shift is None else self.shift.tolist(),
            "scale": None if self.scale is None else self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Scaler":
        def arr(v):
            return None if v is None else np.asarray(v, dtype=np.float32)
        return cls(raw["method"], arr(raw.get("shift")), arr(raw.get("scale")))


def fit_scaler(method: str, X_train: np.ndarray) -> Scaler:
    """Fit ``method`` ("none", "divide_by_255" or "standardize") on the training rows."""
    if method == "none":
        return Scaler("none")
    if method == "divide_by_255":
        return Scaler(method, np.zeros(1, np.float32), np.full(1, 255.0, np.float32))
    moments = Moments(X_train.shape[1])
    for start in range(0, len(X_train), _CHUNK_ROWS):
        moments.add_sums(X_train[start:start + _CHUNK_ROWS])
    for start in range(0, len(X_train), _CHUNK_ROWS):
        moments.add_squares(X_train[start:start + _CHUNK_ROWS])
    return moments.scaler()


# Rows per chunk when fitting: the float64 temporaries stay a few MB however many rows there are
# (``X.std()`` of the whole matrix would make a float64 copy of it, twice the float32 data).
_CHUNK_ROWS = 8192


class Moments:
    """Per-feature mean and standard deviation from rows seen in chunks, in float64 accumulators.

    Two passes, as ``numpy.std`` does: the sums give the mean, then the squared deviations from
    that mean give the variance, which avoids the cancellation of the one-pass formula. Streamed
    training feeds it chunk by chunk from disk; ``fit_scaler`` from an array in memory.
    """

    def __init__(self, features: int) -> None:
        self.rows = 0
        self.sums = np.zeros(features, np.float64)
        self.squares = np.zeros(features, np.float64)
        self._mean: np.ndarray | None = None

    def add_sums(self, chunk: np.ndarray) -> None:
        """First pass: one chunk of (rows, features)."""
        self.rows += len(chunk)
        self.sums += chunk.sum(axis=0, dtype=np.float64)

    def add_squares(self, chunk: np.ndarray) -> None:
        """Second pass, over the same rows: squared deviations from the mean of the first."""
        deviations = chunk.astype(np.float64) - self.mean
        self.squares += np.einsum("ij,ij->j", deviations, deviations)

    @property
    def mean(self) -> np.ndarray:
        if self._mean is None:
            self._mean = self.sums / max(self.rows, 1)
        return self._mean

    def scaler(self) -> "Scaler":
        std = np.sqrt(self.squares / max(self.rows, 1))
        # A constant feature (a blank border pixel, say) has std 0: leave it centred, not divided by 0.
        std[std < 1e-12] = 1.0
        return Scaler("standardize", self.mean.astype(np.float32), std.astype(np.float32))
