"""Input and target scaling, fitted on training rows only and saved with the model.

Fitting on all rows would leak validation and test statistics into training; saving the fitted
statistics is what lets ``predict`` scale new rows exactly as the training rows were scaled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Scaler", "fit_scaler"]


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
    mean = X_train.mean(axis=0, dtype=np.float64)
    std = X_train.std(axis=0, dtype=np.float64)
    # A constant feature (a blank border pixel, say) has std 0: leave it centred, not divided by 0.
    std[std < 1e-12] = 1.0
    return Scaler(method, mean.astype(np.float32), std.astype(np.float32))
